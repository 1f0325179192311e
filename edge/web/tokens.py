"""API tokens for scripts and central systems: random, shown once, stored as SHA-256 only.

Tokens carry scopes (read, write, rules, admin, pull) and optionally a consumer id for the pull
API. They are 256-bit random strings, so a fast hash is enough (a KDF protects low-entropy
passwords, not random keys).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.state import StateDB

if TYPE_CHECKING:
    from edge.runtime import Runtime
    from edge.web.auth import Principal

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
    """
]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure(state: StateDB) -> None:
    state.migrate("tokens", MIGRATIONS)


def create_token(
    state: StateDB, name: str, scopes: Iterable[str], *, consumer: str | None = None, created_by: str = ""
) -> str:
    """Create a token; returns the plaintext, which is never stored."""
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
            "INSERT INTO api_tokens(name, hash, scopes, consumer, created, created_by) VALUES (?,?,?,?,?,?)",
            (name, _hash(token), " ".join(scopes), consumer, time.time(), created_by),
        )
    return token


def revoke_token(state: StateDB, token_id: int) -> bool:
    ensure(state)
    with state.lock:
        cur = state.conn.execute(
            "UPDATE api_tokens SET revoked=? WHERE id=? AND revoked IS NULL", (time.time(), token_id)
        )
    return cur.rowcount > 0


def list_tokens(state: StateDB) -> list[dict[str, Any]]:
    ensure(state)
    with state.lock:
        rows = state.conn.execute(
            "SELECT id, name, scopes, consumer, created, created_by, last_used, revoked FROM api_tokens ORDER BY id"
        ).fetchall()
    return [
        {
            "id": r[0],
            "name": r[1],
            "scopes": r[2].split(),
            "consumer": r[3],
            "created": r[4],
            "created_by": r[5],
            "last_used": r[6],
            "revoked": r[7],
        }
        for r in rows
    ]


def lookup(state: StateDB, token: str) -> Principal | None:
    from edge.web.auth import Principal

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
        state.conn.execute("UPDATE api_tokens SET last_used=? WHERE id=?", (time.time(), row[0]))
    return Principal("token", row[1], frozenset(row[2].split()), consumer=row[3])


def setup(app: web.Application, runtime: Runtime) -> None:
    from edge.web.auth import bearer

    def by_api_token(request: web.Request) -> Principal | None:
        token = bearer(request)
        if not token or runtime.state is None:
            return None
        return lookup(runtime.state, token)

    app.setdefault("authenticators", []).append(by_api_token)
