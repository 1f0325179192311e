"""`edge audit verify` and `edge audit export`: the audit log's hash chain, from the gateway's
console (they read the state DB directly, with or without the service running)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from edge import fmt
from edge.cli import Subcommands, add_command, add_command_group, arg

if TYPE_CHECKING:
    from edge.config import Site

T = TypeVar("T")


def register(sub: Subcommands) -> None:
    group = add_command_group(
        sub,
        "audit",
        help="the audit log: verify its hash chain, export it",
        description="The audit log (logins, account, token and rule changes, point writes) is kept in\n"
        "the state DB as a hash chain: each entry hashes the one before it, and a head record\n"
        "holds the last hash, so an edited, deleted or cut-off entry is found by `verify`.",
        dest="audit_command",
    )
    add_command(
        group,
        "verify",
        help="check the hash chain; exit 1 at the first broken entry",
        description="Check every entry's hash and its link to the one before, then the end of the log\n"
        "against the head record. Prints the number of entries and the last hash (keep it off the\n"
        "gateway: anyone who can write the state DB can rebuild the whole chain, and a kept hash is\n"
        "what such a rebuild no longer matches). On a break it prints the first broken entry and\n"
        "why, and exits 1: an entry without a hash and a head asking for entries to be chained are\n"
        "breaks too. It opens the state DB read-only and reads one snapshot of the log, so it\n"
        "changes nothing and the gateway may be running. Only a log from before the chain (an\n"
        "upgraded site that has written no entry since) is chained first, once, by the chain's\n"
        "own migration.",
        epilog="example:\n  edge audit verify -c /etc/community-edge/site.yaml",
        func=cmd_audit_verify,
        config=True,
    )
    add_command(
        group,
        "export",
        help="write every entry with its hashes as JSON lines",
        description="Write every entry of the audit log, oldest first, as one JSON object per line: id, ts,\n"
        "actor, action, target, detail, prev_hash and hash. A line's hash is SHA-256 of its\n"
        'prev_hash, "\\n" and the line without its two hash fields as compact JSON with sorted keys,\n'
        "so the export can be checked without this program. It reads the state DB read-only; the\n"
        "export itself is then appended to the audit log (action audit_export) after the last\n"
        "entry it holds.",
        epilog="example:\n  edge audit export -c /etc/community-edge/site.yaml --output audit.jsonl",
        func=cmd_audit_export,
        config=True,
        args=[
            arg(
                "--output",
                metavar="FILE",
                help="write to FILE (replaced if it exists, readable by its owner only) instead of stdout",
            )
        ],
    )


def _state_path(config: str) -> tuple[str, Site] | None:
    """(the site's state DB file, the site), or None with the reason on stderr: a missing file is
    not created, another site's in the same folder is refused (the journal it records is not
    this site's: `StateDB`'s `journal`)."""
    from edge.cli import load_or_report
    from edge.state import claim_problem

    site = load_or_report(config)
    if site is None:
        return None
    path = str(site.storage.resolved_state_path())
    if not Path(path).exists():
        print(f"{path}: no state database yet, so no audit log (has the site run?)", file=sys.stderr)
        return None
    problem = claim_problem(path, site.storage.path)
    if problem:
        print(f"error: {problem}: its audit log is another site's", file=sys.stderr)
        return None
    return path, site


def _chain_once(path: str, journal: str) -> None:
    """A log from before the chain, which the gateway has not written to since the upgrade: its
    schema migration chains it, once, in one transaction, as the first new entry would. Every
    later read is read-only, and nothing after that migration chains an unhashed entry."""
    from edge import audit
    from edge.state import StateDB

    state = StateDB(path, journal=journal)
    try:
        audit.ensure(state)
        n = state.conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    finally:
        state.close()
    print(
        f"{path}: chained the {fmt.count(n, 'audit entry')} written before the hash chain existed",
        file=sys.stderr,
    )


def _read(path: str, journal: str, read: Callable[[], T]) -> T:
    """`read` (a read-only verify or export); a log from before the chain is chained once first
    (it raises NotChainedYet before reading anything)."""
    from edge import audit

    try:
        return read()
    except audit.NotChainedYet:
        _chain_once(path, journal)
        return read()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from edge import audit

    found = _state_path(args.config)
    if found is None:
        return 1
    path, site = found
    journal = site.storage.path
    try:
        result = _read(path, journal, lambda: audit.verify(path))  # read-only: checking never changes it
    except audit.NoChain as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.broken is None:
        last = f"last entry #{result.last_id}" if result.last_id is not None else "no entries yet"
        print(f"audit log intact: {fmt.count(result.checked, 'entry')}, {last}, head hash {result.last_hash}")
        return 0
    where = f"entry #{result.broken.entry_id}" if result.broken.entry_id is not None else "the log"
    print(f"audit log broken at {where}: {result.broken.reason}")
    if result.broken.entry is not None:
        print(json.dumps(result.broken.entry, ensure_ascii=False))
    print(f"{fmt.count(result.checked, 'entry')} before it verified")
    return 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    from edge import audit
    from edge.state import StateDB

    found = _state_path(args.config)
    if found is None:
        return 1
    path, site = found
    journal = site.storage.path
    try:
        if args.output is None:
            n = _read(path, journal, lambda: audit.export(path, sys.stdout))
            sys.stdout.flush()
        else:
            from edge.backup import refuse_own_file

            refused = refuse_own_file(site, args.output)
            if refused:  # the state DB it exports from, the journal, keys.db...
                print(refused, file=sys.stderr)
                return 1
            try:
                fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError as exc:
                print(f"error: {args.output}: cannot write the export: {exc.strerror}", file=sys.stderr)
                return 1
            with open(fd, "w", encoding="utf-8") as out:
                n = _read(path, journal, lambda: audit.export(path, out))
            print(f"exported {fmt.count(n, 'audit entry')} to {args.output}", file=sys.stderr)
    except audit.NoChain as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    state = StateDB(path, journal=journal)  # only now: one chained append, after the read-only export
    try:
        audit.record(state, "cli", "audit_export", args.output or "stdout", entries=n)
    finally:
        state.close()
    return 0
