"""Accounts of the local web UI: users and roles, argon2 password hashes, sessions, first-run setup,
login rate limiting and lockout.

There is no default password. While no user exists the gateway prints a one-time setup code to
its log; whoever can read the log (the operator at the console) can create the first admin, a
stranger on the LAN cannot. Sessions are random 256-bit ids stored only as SHA-256 in the state
DB, each with its own CSRF token; the HTTP side lives in `edge.web.account_routes`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge.state import StateDB
from edge.web.auth import ROLE_SCOPES, Principal

if TYPE_CHECKING:
    from aiohttp import web

    from edge.runtime import Runtime

log = logging.getLogger("edge.web.accounts")

ROLES = ("admin", "technician", "viewer")
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 10
MAX_FAILURES = 5  # wrong passwords in a row before the account locks
LOCK_SECONDS = 15 * 60
IP_WINDOW = 60.0  # per-address rate limit on login attempts
IP_MAX_ATTEMPTS = 20
SESSION_IDLE = 12 * 3600
SESSION_MAX = 7 * 24 * 3600
COOKIE = "edge_session"

# argon2id with the library's defaults (64 MiB, t=3): ~0.1 s here, run in a thread so the event
# loop never waits on it.
HASHER = PasswordHasher()
_DUMMY_HASH = HASHER.hash("not-a-real-password-used-for-timing")

MIGRATIONS = [
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        pw_hash TEXT NOT NULL,
        created REAL NOT NULL,
        created_by TEXT NOT NULL DEFAULT '',
        failures INTEGER NOT NULL DEFAULT 0,
        locked_until REAL NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        last_login REAL
    );
    CREATE TABLE sessions (
        hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        last_seen REAL NOT NULL,
        address TEXT NOT NULL DEFAULT ''
    );
    """
]


class AccountError(ValueError):
    """A bad account request; the message says what is accepted."""


class LoginRefused(Exception):
    def __init__(self, status: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Session:
    id_hash: str
    user: str
    role: str
    csrf: str


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def ensure(state: StateDB) -> None:
    state.migrate("accounts", MIGRATIONS)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise AccountError("user name: 1-64 characters from letters, digits and _ . @ -")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    return role


def check_password(password: str, name: str = "") -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("password: at most 1024 characters")
    if name and password.lower() == name.lower():
        raise AccountError("password: must not be the user name")
    return password


# ---------------------------------------------------------------- users
def user_count(state: StateDB) -> int:
    ensure(state)
    with state.lock:
        return int(state.conn.execute("SELECT count(*) FROM users").fetchone()[0])


def add_user(state: StateDB, name: str, role: str, password: str, *, created_by: str = "") -> None:
    check_name(name)
    check_role(role)
    check_password(password, name)
    pw_hash = HASHER.hash(password)
    ensure(state)
    with state.lock:
        if state.conn.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
            raise AccountError(f"user {name!r} already exists")
        state.conn.execute(
            "INSERT INTO users(name, role, pw_hash, created, created_by) VALUES (?,?,?,?,?)",
            (name, role, pw_hash, time.time(), created_by),
        )


def list_users(state: StateDB) -> list[dict[str, Any]]:
    ensure(state)
    now = time.time()
    with state.lock:
        rows = state.conn.execute(
            "SELECT name, role, created, created_by, failures, locked_until, disabled, last_login "
            "FROM users ORDER BY name"
        ).fetchall()
    return [
        {
            "name": r[0],
            "role": r[1],
            "created": r[2],
            "created_by": r[3],
            "failures": r[4],
            "locked": r[5] > now,
            "locked_until": r[5] if r[5] > now else None,
            "disabled": bool(r[6]),
            "last_login": r[7],
        }
        for r in rows
    ]


def update_user(
    state: StateDB,
    name: str,
    *,
    role: str | None = None,
    password: str | None = None,
    disabled: bool | None = None,
    unlock: bool = False,
) -> None:
    """Change a user; a new password, a role change or disabling also ends the user's sessions."""
    ensure(state)
    if role is not None:
        check_role(role)
    pw_hash = HASHER.hash(check_password(password, name)) if password is not None else None
    with state.lock:
        row = state.conn.execute("SELECT role FROM users WHERE name=?", (name,)).fetchone()
        if row is None:
            raise AccountError(f"no user {name!r}")
        if (role not in (None, "admin") or disabled) and row[0] == "admin" and _admins(state, name) == 0:
            raise AccountError("this is the last admin: add another admin first")
        if role is not None:
            state.conn.execute("UPDATE users SET role=? WHERE name=?", (role, name))
        if pw_hash is not None:
            state.conn.execute(
                "UPDATE users SET pw_hash=?, failures=0, locked_until=0 WHERE name=?", (pw_hash, name)
            )
        if disabled is not None:
            state.conn.execute("UPDATE users SET disabled=? WHERE name=?", (int(disabled), name))
        if unlock:
            state.conn.execute("UPDATE users SET failures=0, locked_until=0 WHERE name=?", (name,))
        if role is not None or pw_hash is not None or disabled:
            state.conn.execute("DELETE FROM sessions WHERE user=?", (name,))


def delete_user(state: StateDB, name: str) -> None:
    ensure(state)
    with state.lock:
        row = state.conn.execute("SELECT role FROM users WHERE name=?", (name,)).fetchone()
        if row is None:
            raise AccountError(f"no user {name!r}")
        if row[0] == "admin" and _admins(state, name) == 0:
            raise AccountError("this is the last admin: add another admin first")
        state.conn.execute("DELETE FROM sessions WHERE user=?", (name,))
        state.conn.execute("DELETE FROM users WHERE name=?", (name,))


def _admins(state: StateDB, other_than: str) -> int:
    row = state.conn.execute(
        "SELECT count(*) FROM users WHERE role='admin' AND disabled=0 AND name<>?", (other_than,)
    ).fetchone()
    return int(row[0])


# ---------------------------------------------------------------- login
class LoginGuard:
    """Per-address rate limit (sliding window) and per-account lockout after MAX_FAILURES."""

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self.attempts: dict[str, deque[float]] = {}
        self.unknown_failures: dict[str, tuple[int, float]] = {}  # names with no account

    def check_address(self, address: str) -> None:
        now = self.clock()
        q = self.attempts.setdefault(address, deque())
        while q and q[0] < now - IP_WINDOW:
            q.popleft()
        if len(q) >= IP_MAX_ATTEMPTS:
            raise LoginRefused(429, "too many login attempts from this address", q[0] + IP_WINDOW - now)
        q.append(now)
        if len(self.attempts) > 10000:  # bounded memory against address spraying
            self.attempts = {a: d for a, d in self.attempts.items() if d and d[-1] > now - IP_WINDOW}


def verify_login(state: StateDB, guard: LoginGuard, name: str, password: str, address: str) -> str:
    """The user's role when name/password are right; else LoginRefused (401, 423 locked, 429)."""
    guard.check_address(address)
    ensure(state)
    now = guard.clock()
    with state.lock:
        row = state.conn.execute(
            "SELECT role, pw_hash, failures, locked_until, disabled FROM users WHERE name=?", (name,)
        ).fetchone()
    if row is None:
        # Same work and same answers as for a real account, so names cannot be enumerated.
        fails, until = guard.unknown_failures.get(name, (0, 0.0))
        if until > now:
            raise LoginRefused(423, "account locked after too many wrong passwords", until - now)
        _verify(_DUMMY_HASH, password)
        fails += 1
        guard.unknown_failures[name] = (fails, now + LOCK_SECONDS if fails >= MAX_FAILURES else 0.0)
        if len(guard.unknown_failures) > 10000:
            guard.unknown_failures.clear()
        raise LoginRefused(401, "wrong user name or password")
    role, pw_hash, failures, locked_until, disabled = row
    if locked_until > now:
        raise LoginRefused(423, "account locked after too many wrong passwords", locked_until - now)
    if not _verify(pw_hash, password) or disabled:
        failures += 1
        lock = now + LOCK_SECONDS if failures >= MAX_FAILURES else 0.0
        with state.lock:
            state.conn.execute(
                "UPDATE users SET failures=?, locked_until=? WHERE name=?",
                (0 if lock else failures, lock, name),
            )
        if lock:
            raise LoginRefused(423, "account locked after too many wrong passwords", LOCK_SECONDS)
        raise LoginRefused(401, "wrong user name or password")
    with state.lock:
        state.conn.execute("UPDATE users SET failures=0, last_login=? WHERE name=?", (now, name))
        if HASHER.check_needs_rehash(pw_hash):
            state.conn.execute("UPDATE users SET pw_hash=? WHERE name=?", (HASHER.hash(password), name))
    return str(role)


def _verify(pw_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(pw_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# ---------------------------------------------------------------- sessions
def create_session(state: StateDB, user: str, address: str = "") -> tuple[str, str]:
    """A new session; returns (cookie value, csrf token). Only the hash of the cookie is stored."""
    ensure(state)
    sid = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = time.time()
    with state.lock:
        state.conn.execute(
            "INSERT INTO sessions(hash, user, csrf, created, last_seen, address) VALUES (?,?,?,?,?,?)",
            (_sha(sid), user, csrf, now, now, address),
        )
        # sweep expired sessions now and then, not on every request
        state.conn.execute(
            "DELETE FROM sessions WHERE last_seen < ? OR created < ?", (now - SESSION_IDLE, now - SESSION_MAX)
        )
    return sid, csrf


def find_session(state: StateDB, sid: str) -> Session | None:
    ensure(state)
    now = time.time()
    h = _sha(sid)
    with state.lock:
        row = state.conn.execute(
            "SELECT s.user, u.role, s.csrf, s.created, s.last_seen FROM sessions s "
            "JOIN users u ON u.name = s.user WHERE s.hash=? AND u.disabled=0",
            (h,),
        ).fetchone()
        if row is None:
            return None
        if row[4] < now - SESSION_IDLE or row[3] < now - SESSION_MAX:
            state.conn.execute("DELETE FROM sessions WHERE hash=?", (h,))
            return None
        if now - row[4] > 60:  # touching every request would be a write per request
            state.conn.execute("UPDATE sessions SET last_seen=? WHERE hash=?", (now, h))
    return Session(h, row[0], row[1], row[2])


def end_session(state: StateDB, id_hash: str) -> None:
    ensure(state)
    with state.lock:
        state.conn.execute("DELETE FROM sessions WHERE hash=?", (id_hash,))


def session_id(id_hash: str) -> str:
    """The opaque id a session is listed and ended by: derived from the stored hash, so it is
    neither the cookie value nor the hash the cookie is looked up by."""
    return _sha("session-id:" + id_hash)[:24]


def list_sessions(state: StateDB, user: str | None = None) -> list[dict[str, Any]]:
    """Live sessions (of `user`, or everyone's), newest first, without anything that would log in."""
    ensure(state)
    now = time.time()
    sql = "SELECT hash, user, created, last_seen, address FROM sessions WHERE last_seen >= ? AND created >= ?"
    args: list[Any] = [now - SESSION_IDLE, now - SESSION_MAX]
    if user is not None:
        sql += " AND user=?"
        args.append(user)
    with state.lock:
        rows = state.conn.execute(sql + " ORDER BY created DESC", args).fetchall()
    return [
        {"id": session_id(h), "user": u, "created": c, "last_seen": seen, "address": a, "_hash": h}
        for h, u, c, seen, a in rows
    ]


def find_session_by_id(state: StateDB, sid: str, user: str | None = None) -> dict[str, Any] | None:
    """The live session with opaque id `sid` (only among `user`'s when given)."""
    return next((s for s in list_sessions(state, user) if s["id"] == sid), None)


# ---------------------------------------------------------------- first run
class SetupCode:
    """The one-time code that lets the first admin be created; exists only while there are no users."""

    def __init__(self) -> None:
        digits = "".join(secrets.choice("0123456789") for _ in range(12))
        self.code: str | None = f"{digits[:4]}-{digits[4:8]}-{digits[8:]}"

    def matches(self, given: str) -> bool:
        if self.code is None or not isinstance(given, str):
            return False
        clean = given.strip().replace(" ", "")
        return hmac.compare_digest(clean.encode(), self.code.encode()) or hmac.compare_digest(
            clean.encode(), self.code.replace("-", "").encode()
        )

    def consume(self) -> None:
        self.code = None


@dataclass
class Accounts:
    """Everything the account routes need, kept on the app."""

    state: StateDB
    guard: LoginGuard
    setup_code: SetupCode | None


def session_principal(session: Session) -> Principal:
    return Principal(
        "user",
        session.user,
        ROLE_SCOPES.get(session.role, frozenset()),
        role=session.role,
        session=session.id_hash,
        csrf=session.csrf,
    )


def setup(app: web.Application, runtime: Runtime) -> None:
    from edge.web import account_routes

    state = runtime.state
    assert state is not None, "the state DB opens before the web server"
    ensure(state)
    code = None
    if user_count(state) == 0:
        code = SetupCode()
        # The message carries the code itself so every log format (logfmt, journald) shows it.
        log.warning(
            "no user accounts yet: open the web UI and create the admin with setup code %s", code.code
        )
    accounts = Accounts(state, LoginGuard(), code)
    app[account_routes.ACCOUNTS_KEY] = accounts

    def by_session(request: web.Request) -> Principal | None:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        session = find_session(state, sid)
        return session_principal(session) if session else None

    from edge.web.auth import authenticators

    authenticators(app).append(by_session)
    account_routes.add_routes(app, accounts)
