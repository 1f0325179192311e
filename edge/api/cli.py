"""`edge users`, `edge tokens` and `edge tls`: accounts, API tokens and a self-signed certificate,
from the gateway's console (they work on the state DB directly, with or without the service running).
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge import fmt
from edge.cli import Command, add_command, add_command_group, arg, int_range, non_empty

#: the longest validity `edge tls selfsigned` writes: a hundred years
MAX_DAYS = 36500

_PASSWORD_STDIN = arg("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
_JSON = arg("--json", action="store_true", help="print JSON")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    us = add_command_group(
        sub,
        "users",
        help="web UI accounts: add, list, set a password, unlock",
        description="Manage the web UI's accounts (roles: admin, technician, viewer).",
        dest="users_command",
    )
    add_command(
        us,
        "add",
        help="add a user (asks for the password)",
        description="Add a web UI account. The password is asked for twice (or read from stdin with\n"
        "--password-stdin); it is stored as an argon2id hash only.",
        func=cmd_users_add,
        config=True,
        args=[
            arg("name", help="user name (ASCII letters, digits, _ . @ -)"),
            arg(
                "--role",
                default="technician",
                choices=["admin", "technician", "viewer"],
                help="admin: everything; technician: read, write points, edit rules; viewer: read only",
            ),
            _PASSWORD_STDIN,
        ],
    )
    add_command(
        us,
        "list",
        help="list users",
        description="List the web UI's accounts with their role, state and last login.",
        func=cmd_users_list,
        config=True,
        args=[_JSON],
    )
    add_command(
        us,
        "passwd",
        help="set a user's password (also clears its login throttle)",
        description="Set a user's password; this also clears the throttle of failed logins at the\n"
        "name and ends the user's other sessions.",
        func=cmd_users_passwd,
        config=True,
        args=[arg("name", help="the user whose password to set"), _PASSWORD_STDIN],
    )
    unlock = add_command(
        us,
        "unlock",
        help="clear the throttle of failed logins at a user (or at every name)",
        description="Forget the failed logins at a user's name, from every address, so that a\n"
        "correct password gets in at once. Failed logins slow down the address they come from\n"
        "(exponentially, up to 5 minutes) and, past a few, every address trying that name (up to\n"
        "15 s); this clears both. A running gateway honours it at the next attempt (the counters\n"
        "are in the state DB). Not cleared: the in-memory limit of 20 attempts per minute per\n"
        "address, which lapses by itself within a minute. Passwords and sessions are unchanged.",
        epilog="examples:\n  edge users unlock -c /etc/community-edge/site.yaml wang\n"
        "  edge users unlock -c /etc/community-edge/site.yaml --all",
        func=cmd_users_unlock,
        config=True,
        args=[
            arg("name", nargs="?", metavar="NAME", help="the user to unlock (omit with --all)"),
            arg(
                "--all",
                action="store_true",
                help="clear the counters of every name, including names that are not accounts",
            ),
        ],
    )
    unlock.set_defaults(parser=unlock)  # NAME and --all exclude each other: it reports a usage error

    ts = add_command_group(
        sub,
        "tokens",
        help="API tokens: create, list, revoke",
        description="API tokens for scripts and central systems. A token is printed once, at creation, "
        "and stored only as a hash.",
        dest="tokens_command",
    )
    add_command(
        ts,
        "create",
        help="create a token and print it once",
        description="Create an API token and print it once; only its hash is stored. Scopes: read, write,\n"
        "rules, admin, pull (pull needs --consumer: the consumer whose cursor the token moves). A consumer\n"
        "id that names an upstream sink of the site or a component's cursor (kpi) is refused: the token\n"
        "would move that cursor. One the site file does not declare under consumers: is made with a\n"
        "warning naming the declared ones: until declared, it gets only public records.",
        func=cmd_tokens_create,
        config=True,
        args=[
            arg("name", type=non_empty, help="what the token is for"),
            arg(
                "--scope",
                action="append",
                dest="scopes",
                choices=["read", "write", "rules", "admin", "pull"],
                help="repeat for several scopes (default: read)",
            ),
            arg(
                "--consumer",
                help="pull consumer id (needed with --scope pull; not an upstream sink's id, not kpi)",
            ),
        ],
    )
    add_command(
        ts,
        "list",
        help="list tokens (never their values)",
        description="List API tokens: id, name, scopes, consumer, created, last used, revoked.",
        func=cmd_tokens_list,
        config=True,
        args=[_JSON],
    )
    add_command(
        ts,
        "revoke",
        help="revoke a token by id",
        description="Revoke an API token (see `edge tokens list` for ids); it stops working at once.",
        func=cmd_tokens_revoke,
        config=True,
        args=[arg("id", type=_token_id, help="the token's id")],
    )

    tl = add_command_group(
        sub,
        "tls",
        help="TLS helpers for the web UI",
        description="Then set web.tls_cert and web.tls_key in the site file.",
        dest="tls_command",
    )
    add_command(
        tl,
        "selfsigned",
        help="generate a self-signed certificate and key for HTTPS",
        description="Generate a self-signed certificate and key for the web UI's HTTPS, then set\n"
        "web.tls_cert and web.tls_key in the site file. Browsers warn about a self-signed\n"
        "certificate until it is trusted; compare its SHA-256 fingerprint (printed here).",
        func=cmd_tls_selfsigned,
        args=[
            arg("--out", required=True, metavar="DIR", help="writes DIR/edge.crt and DIR/edge.key"),
            arg(
                "--name",
                action="append",
                dest="names",
                type=non_empty,
                help="host name or IP for the certificate (repeat)",
            ),
            arg(
                "--days",
                type=int_range(1, MAX_DAYS),
                default=3650,
                help=f"validity of the certificate in days, 1 to {MAX_DAYS}",
            ),
        ],
    )


def _token_id(text: str) -> int:
    """A token id as the API takes it (SQLite's integers stop at 64 bits): a usage error otherwise."""
    from edge.api.tokens import MAX_TOKEN_ID

    return int_range(1, MAX_TOKEN_ID)(text)


def _site(args: argparse.Namespace) -> Any:
    from edge.cli import load_or_report

    site = load_or_report(args.config)
    if site is None:
        raise SystemExit(1)
    return site


def _state(args: argparse.Namespace, site: Any = None) -> Any:
    from edge.state import StateDB

    site = site or _site(args)
    # refused when it is another journal's: two sites in one folder would share accounts and tokens
    return StateDB(site.storage.resolved_state_path(), journal=site.storage.path)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("repeat: ") != first:
        raise SystemExit("the two passwords differ; nothing changed")
    return first


def _on_state(command: Callable[[argparse.Namespace, Any], int]) -> Command:
    """`command` run on the state DB of the site in `-c`. The ValueError it raises (an AccountError,
    a token the checks refuse) is the refusal of what was asked: `error: ...`, exit status 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        state = _state(args)
        try:
            return command(args, state)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def _done(state: Any, action: str, target: str, message: str, **details: Any) -> int:
    """Audit a change made from the console (by "cli"), then tell the operator."""
    from edge import audit

    audit.record(state, "cli", action, target, **details)
    print(message)
    return 0


def _listed(
    args: argparse.Namespace, rows: list[dict[str, Any]], line: Callable[[dict[str, Any]], str]
) -> int:
    """`rows` as one JSON array with --json, else one `line` a row."""
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for row in rows:
        print(line(row))
    return 0


@_on_state
def cmd_users_add(args: argparse.Namespace, state: Any) -> int:
    from edge.api.accounts import add_user

    add_user(state, args.name, args.role, _password(args), created_by="cli")
    return _done(state, "user_add", args.name, f"added {args.name} ({args.role})", role=args.role)


def _when(ts: float | None, tz: str, never: str) -> str:
    return fmt.timestamp(ts, tz) if ts else never


def _user_line(u: dict[str, Any], tz: str) -> str:
    slowed = f"slowed ({u['failures']} failed logins)"
    flags = " ".join(f for f, on in ((slowed, u["locked"]), ("disabled", u["disabled"])) if on)
    last = _when(u["last_login"], tz, "never")
    return f"{u['name']:<24} {u['role']:<11} last login {last:<26} {flags}".rstrip()


def cmd_users_list(args: argparse.Namespace) -> int:
    from edge.api.accounts import list_users

    site = _site(args)
    tz = site.site.timezone  # times as the site's UI shows them
    return _listed(args, list_users(_state(args, site)), lambda u: _user_line(u, tz))


@_on_state
def cmd_users_passwd(args: argparse.Namespace, state: Any) -> int:
    from edge.api.accounts import update_user

    update_user(state, args.name, password=_password(args), unlock=True)
    message = f"password of {args.name} set; its sessions were ended"
    return _done(state, "user_update", args.name, message, password="changed")


def cmd_users_unlock(args: argparse.Namespace) -> int:
    from edge.api.accounts import clear_throttle, list_users

    if args.all == bool(args.name):
        args.parser.error("give either a user NAME or --all (not both)")
    state = _state(args)
    if args.name and args.name not in {u["name"] for u in list_users(state)}:
        print(
            f"error: no user {args.name!r} (see `edge users list`; --all clears every name)", file=sys.stderr
        )
        return 1
    cleared = clear_throttle(state, args.name)
    message = f"cleared {cleared} login throttle counter(s) for {args.name or 'every name'}"
    return _done(state, "user_unlock", args.name or "*", message, counters=cleared)


def _journal_cursors(site: Any) -> dict[str, tuple[Any, ...]]:
    """The journal's cursors (name -> (kind, seq, updated)); none when it does not exist yet. A
    journal that cannot be read is a ValueError: what it holds cannot be checked."""
    from edge.store.journal import Journal, JournalUnreadable

    if not Path(site.storage.path).exists():
        return {}
    try:
        journal = Journal.open_readonly(site.storage.path)
    except JournalUnreadable as exc:
        raise ValueError(f"the journal's cursors cannot be checked: {exc}") from None
    try:
        return dict(journal.cursors())
    finally:
        journal.close_sync()


def cmd_tokens_create(args: argparse.Namespace) -> int:
    from edge.api.tokens import consumer_refusal, create_token, undeclared_warning

    site = _site(args)
    state = _state(args, site)
    scopes = args.scopes or ["read"]
    try:
        refusal = args.consumer and consumer_refusal(site, args.consumer, _journal_cursors(site))
        if refusal:
            raise ValueError(refusal)
        token = create_token(state, args.name, scopes, consumer=args.consumer, created_by="cli")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    detail: dict[str, Any] = {"scopes": sorted(scopes)}
    if args.consumer:  # as the API does: a misspelt consumer id is seen when its token is made
        declared = [c.id for c in site.consumers]
        detail["consumer"] = args.consumer
        detail["consumer_declared"] = args.consumer in declared
        if args.consumer not in declared and "pull" in scopes:
            print(f"warning: {undeclared_warning(args.consumer, declared)}", file=sys.stderr)
    _done(state, "token_create", args.name, token, **detail)
    print("(shown once: it is stored only as a hash)", file=sys.stderr)
    return 0


def _token_line(t: dict[str, Any], tz: str) -> str:
    status = "revoked" if t["revoked"] else "active"
    created = _when(t["created"], tz, "?")
    used = _when(t["last_used"], tz, "never")
    return (
        f"{t['id']:>4} {t['name']:<24} {' '.join(t['scopes']):<24} {t['consumer'] or '':<16} {status:<8} "
        f"created {created}  last used {used}"
    )


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from edge.api.tokens import list_tokens

    site = _site(args)
    tz = site.site.timezone
    return _listed(args, list_tokens(_state(args, site)), lambda t: _token_line(t, tz))


@_on_state
def cmd_tokens_revoke(args: argparse.Namespace, state: Any) -> int:
    from edge.api.tokens import revoke_token

    if not revoke_token(state, args.id):
        print(f"error: no active token with id {args.id}", file=sys.stderr)
        return 1
    return _done(state, "token_revoke", str(args.id), f"revoked token {args.id}")


def cmd_tls_selfsigned(args: argparse.Namespace) -> int:
    import socket

    out = Path(args.out).absolute()  # printed for the site file: a path that holds from any folder
    if out.exists() and not out.is_dir():
        print(
            f"error: {out}: not a directory (--out names the directory for edge.crt and edge.key)",
            file=sys.stderr,
        )
        return 1
    out.mkdir(parents=True, exist_ok=True)
    names = args.names or [socket.gethostname(), "localhost", "127.0.0.1"]
    crt, key = out / "edge.crt", out / "edge.key"
    _self_signed(names, args.days, crt, key)
    print(f"wrote {crt} and {key}; set web.tls_cert: {crt} and web.tls_key: {key}")
    print(f"SHA-256 fingerprint: {_fingerprint(crt)}")
    return 0


def _self_signed(names: list[str], days: int, crt: Path, key_path: Path) -> None:
    """An EC P-256 key and a certificate for `names` (IP addresses and DNS names)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_path.unlink(missing_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _fingerprint(crt: Path) -> str:
    import hashlib
    import ssl

    der = ssl.PEM_cert_to_DER_cert(crt.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
