"""API tokens for scripts and central systems: random, shown once, stored as SHA-256 only.

Tokens carry scopes (read, write, rules, admin, pull) and optionally a consumer id for the pull
API: the name of the journal cursor the token reads and moves, so one that names another's cursor
(an upstream sink's, a component's such as the KPI fold's) is refused when the token is made,
through the API and on the command line alike (`consumer_refusal`). They are 256-bit random strings, so a fast hash is enough (a KDF protects low-entropy
passwords, not random keys).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge import audit
from edge.api.auth import Principal, bearer_authenticators, require
from edge.api.problem import Problem, json_response, read_json
from edge.state import StateDB

if TYPE_CHECKING:
    from edge.config import Site
    from edge.runtime import Runtime

log = logging.getLogger("edge.api")
PREFIX = "ce_"
VALID_SCOPES = frozenset({"read", "write", "rules", "admin", "pull"})
MIGRATIONS = [
    """
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,          -- space separated
        consumer TEXT,                 -- pull tokens: the consumer id whose cursor they move
        created REAL NOT NULL,
        created_by TEXT NOT NULL DEFAULT '',
        last_used REAL,
        revoked REAL
    );
    """,
    # the user on whose authority a token was made (a token made with another token: that one's
    # owner); NULL for the console's: a user who loses the right to a token's scopes loses it
    """
    ALTER TABLE api_tokens ADD COLUMN owner TEXT;
    UPDATE api_tokens SET owner = created_by WHERE created_by NOT IN ('', 'cli');
    """,
]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure(state: StateDB) -> None:
    state.migrate("tokens", MIGRATIONS)


def create_token(
    state: StateDB,
    name: str,
    scopes: Iterable[str],
    *,
    consumer: str | None = None,
    created_by: str = "",
    owner: str | None = None,
) -> str:
    """Create a token; returns the plaintext, which is never stored. `owner` is the user on whose
    authority it is made (None: the console's), whose demotion, disabling or deletion revokes it
    (`revoke_owned`)."""
    scopes = sorted(set(scopes))
    bad = [s for s in scopes if s not in VALID_SCOPES]
    if bad or not scopes:
        raise ValueError(f"invalid scopes {bad or scopes}; accepted: {', '.join(sorted(VALID_SCOPES))}")
    if "pull" in scopes and not consumer:
        raise ValueError("a token with the pull scope needs a consumer id")
    ensure(state)
    token = PREFIX + secrets.token_urlsafe(32)
    with state.lock:
        state.conn.execute(
            "INSERT INTO api_tokens(name, hash, scopes, consumer, created, created_by, owner) "
            "VALUES (?,?,?,?,?,?,?)",
            (name, _hash(token), " ".join(scopes), consumer, time.time(), created_by, owner),
        )
    return token


def consumer_refusal(site: Site, consumer: str, cursors: Mapping[str, tuple[Any, ...]]) -> str | None:
    """Why a token may not name `consumer` as its consumer id (None when it may): the id names an
    upstream sink of `site`, a component's reserved cursor, or a cursor of another kind among the
    journal's `cursors`; such a token would read and move that cursor, and the sink or component
    would skip what the token acknowledged (`Site.cursor_owner`)."""
    owner = site.cursor_owner(consumer, cursors)
    if owner is None:
        return None
    return (
        f"consumer id {consumer!r} names {owner}, whose cursor it is, not a pull consumer's; "
        "give the pull token another consumer id"
    )


#: the largest token id taken (SQLite's integers stop at 64 bits): `edge tokens revoke` refuses a
#: larger one as a usage error, the API with 400
MAX_TOKEN_ID = 2**62


def revoke_token(state: StateDB, token_id: int) -> bool:
    ensure(state)
    with state.lock:
        cur = state.conn.execute(
            "UPDATE api_tokens SET revoked=? WHERE id=? AND revoked IS NULL", (time.time(), token_id)
        )
    return cur.rowcount > 0


def owner_of(state: StateDB, token_id: int) -> str | None:
    """The user on whose authority token `token_id` was made (None: the console's, or no token)."""
    ensure(state)
    with state.lock:
        row = state.conn.execute("SELECT owner FROM api_tokens WHERE id=?", (token_id,)).fetchone()
    return None if row is None else row[0]


def revoke_owned(state: StateDB, owner: str, keep: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Revoke the live tokens made on `owner`'s authority that hold a scope outside `keep` (every
    one when `keep` is empty); returns them (id, name, scopes). Runs inside the caller's
    transaction when there is one, so a user's change and its tokens' revocation are one."""
    kept = frozenset(keep)
    ensure(state)
    now = time.time()
    with state.lock:
        rows = state.conn.execute(
            "SELECT id, name, scopes FROM api_tokens WHERE owner=? AND revoked IS NULL ORDER BY id", (owner,)
        ).fetchall()
        gone = [r for r in rows if not set(r[2].split()) <= kept]
        for r in gone:
            state.conn.execute("UPDATE api_tokens SET revoked=? WHERE id=?", (now, r[0]))
    return [{"id": r[0], "name": r[1], "scopes": r[2].split()} for r in gone]


def list_tokens(state: StateDB) -> list[dict[str, Any]]:
    ensure(state)
    with state.lock:
        rows = state.conn.execute(
            "SELECT id, name, scopes, consumer, created, created_by, owner, last_used, revoked "
            "FROM api_tokens ORDER BY id"
        ).fetchall()
    # the state DB's rows are sqlite3.Row: keyed by the SELECT's column names, in its order
    return [{**dict(r), "scopes": r["scopes"].split()} for r in rows]


def lookup(state: StateDB, token: str) -> Principal | None:
    if not token.startswith(PREFIX):
        return None
    ensure(state)
    with state.lock:
        row = state.conn.execute(
            "SELECT id, name, scopes, consumer FROM api_tokens WHERE hash=? AND revoked IS NULL",
            (_hash(token),),
        ).fetchone()
        if row is None:
            return None
        now = time.time()
        noted = (state.path, row[0])
        if now - _noted.get(noted, 0.0) >= LAST_USED_EVERY_S:
            try:  # a note, not the authentication: a full disk must not lock every token out
                state.conn.execute("UPDATE api_tokens SET last_used=? WHERE id=?", (now, row[0]))
                _noted[noted] = now
            except sqlite3.OperationalError as exc:
                log.warning("token %s: last use not recorded: %s", row[1], exc)
    return Principal("token", row[1], frozenset(row[2].split()), consumer=row[3], token_id=row[0])


#: a token's `last_used` is written at most this often (a scraper every 15 s wrote it each time)
LAST_USED_EVERY_S = 60.0
_noted: dict[tuple[str, int], float] = {}  # (state DB, token id) -> when its last use was written


def _site_state(request: web.Request) -> StateDB | None:
    # imported here: the app module imports every route module, which `edge tokens` (this
    # module's other user) does not need
    from edge.api.keys import get_runtime

    return get_runtime(request).state


def by_api_token(request: web.Request, token: str) -> Principal | None:
    """The bearer authenticator for API tokens."""
    state = _site_state(request)
    return None if state is None else lookup(state, token)


def _state(request: web.Request) -> StateDB:
    state = _site_state(request)
    assert state is not None, "the state DB opens before the web server"
    return state


def site_consumers(runtime: Runtime) -> list[dict[str, Any]]:
    """The pull consumers the site file declares: their tokens come from the file's references
    (an environment variable or a file), so only where the token comes from is said, never it."""
    return [
        {
            "id": c.id,
            "description": c.description,
            "max_privacy": str(c.max_privacy),
            "token_from": "env" if c.token_env else "file",
            "pseudonymised": c.pseudonymise is not None,
            "scopes": ["pull"],
            "source": "site",
        }
        for c in runtime.site.consumers
    ]


#: the class of the records and snapshots a pull consumer the site file does not declare receives
#: (PullService.max_privacy, blobs.may_see): a token alone, perhaps misspelt, chose no class
UNDECLARED_CLASS = "public"


def undeclared_warning(consumer: str, declared: list[str]) -> str:
    """What the maker of a pull token is told when its consumer id is not in the site file: most
    often a typo, and such a consumer gets only public records, not a class the site chose."""
    return (
        f"consumer id {consumer!r} is not declared under consumers: in the site file (declared: "
        f"{', '.join(declared) or 'none'}); check it for a typo. Until an entry declares it (and the "
        f"gateway restarts), it gets only {UNDECLARED_CLASS} records and snapshots, and retention "
        "does not wait for it"
    )


async def index(request: web.Request) -> web.Response:
    """Tokens made here (database) and the consumers declared in the site file, so the users and
    tokens page need not infer the latter from the sync status; a pull token whose consumer the
    site file does not declare says so (`consumer_declared` false)."""
    require(request, "admin")
    from edge.api.keys import get_runtime

    runtime = get_runtime(request)
    declared = {c.id for c in runtime.site.consumers}
    rows = list_tokens(_state(request))
    for row in rows:
        if row["consumer"]:
            row["consumer_declared"] = row["consumer"] in declared
    return json_response({"tokens": rows, "consumers": site_consumers(runtime)})


async def create(request: web.Request) -> web.Response:
    principal = require(request, "admin")
    body = await read_json(request, 4096)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"].strip():
        raise Problem(
            400,
            "Missing token name",
            'send {"name": ..., "scopes": [...], "consumer": ...}',
            message_key="msg.token.missing_name",
        )
    scopes = body.get("scopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise Problem(
            422,
            "Invalid scopes",
            f"a list of: {', '.join(sorted(VALID_SCOPES))}",
            message_key="msg.token.bad_scopes",
            args={"accepted": ", ".join(sorted(VALID_SCOPES))},
        )
    if not isinstance(body.get("consumer"), str | None):
        raise Problem(
            422,
            "Invalid consumer",
            "consumer is a consumer id (a string) or null",
            message_key="msg.token.bad_consumer",
        )
    consumer = body.get("consumer") or None
    declared: list[str] = []
    if consumer is not None:
        from edge.api.keys import get_runtime

        runtime = get_runtime(request)
        declared = [c.id for c in runtime.site.consumers]
        refusal = consumer_refusal(runtime.site, consumer, runtime.journal.cursors())
        if refusal is not None:
            raise Problem(
                422,
                "Invalid consumer",
                refusal,
                message_key="msg.token.consumer_taken",
                args={"consumer": consumer},
                consumer=consumer,
            )
    # on whose authority: the user's, or for a token made with a token, that token's owner's
    owner = principal.name if principal.kind == "user" else None
    if principal.token_id is not None:
        owner = owner_of(_state(request), principal.token_id)
    try:
        token = create_token(
            _state(request),
            body["name"].strip()[:100],
            scopes,
            consumer=consumer,
            created_by=principal.name,
            owner=owner,
        )
    except ValueError as exc:
        # create_token refuses unknown or no scopes first, then a pull token without a consumer
        scopes_ok = bool(scopes) and all(s in VALID_SCOPES for s in scopes)
        raise Problem(
            422,
            "Invalid token request",
            str(exc),
            message_key="msg.token.pull_needs_consumer" if scopes_ok else "msg.token.bad_scopes",
            args={} if scopes_ok else {"accepted": ", ".join(sorted(VALID_SCOPES))},
        ) from None
    answer: dict[str, Any] = {"token": token, "name": body["name"], "scopes": sorted(scopes)}
    detail: dict[str, Any] = {"scopes": sorted(scopes)}
    if consumer is not None:
        answer["consumer"] = detail["consumer"] = consumer
        answer["consumer_declared"] = detail["consumer_declared"] = consumer in declared
        if consumer not in declared and "pull" in scopes:
            answer["warning"] = undeclared_warning(consumer, declared)
            answer["declared_consumers"] = declared
            log.warning("API token %r: %s", body["name"][:100], answer["warning"])
    audit.record(_state(request), principal.name, "token_create", body["name"], **detail)
    return json_response(answer, status=201)


async def revoke(request: web.Request) -> web.Response:
    principal = require(request, "admin")
    try:
        token_id = int(request.match_info["id"])
    except ValueError:
        raise Problem(400, "Bad token id", "token ids are integers") from None
    if not 1 <= token_id <= MAX_TOKEN_ID:  # SQLite integers stop at 64 bits
        raise Problem(400, "Bad token id", f"token ids are integers from 1 to {MAX_TOKEN_ID}")
    if not revoke_token(_state(request), token_id):
        raise Problem(404, "No such token", f"no active token with id {token_id}")
    audit.record(_state(request), principal.name, "token_revoke", str(token_id))
    return json_response({"ok": True})


ROUTES = [
    web.get("/api/v1/tokens", index),
    web.post("/api/v1/tokens", create),
    web.delete("/api/v1/tokens/{id}", revoke),
]


def setup(app: web.Application, runtime: Runtime) -> None:
    """API tokens as bearer credentials, and token management for admins: list, create (the
    plaintext is in this one answer), revoke."""
    bearer_authenticators(app).append(by_api_token)
    app.router.add_routes(ROUTES)
