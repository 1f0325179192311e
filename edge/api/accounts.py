"""Accounts of the local web UI: users and roles, argon2 password hashes, sessions, first-run setup
and the login throttle.

There is no default password. While no user exists the gateway prints a one-time setup code to
its log; whoever can read the log (the operator at the console) can create the first admin, a
stranger on the LAN cannot. Sessions are random 256-bit ids stored only as SHA-256 in the state
DB, each with its own CSRF token; the HTTP side lives in `edge.api.account_routes`.

Login throttle. A hard lock after N wrong passwords lets anyone who can reach the login form keep
the admin out for good (N guesses every lock period renew it). So nothing here ever refuses a
correct password for longer than a short, capped wait unless the wrong guesses came from the same
source. A source is an IPv4 address or an IPv6 /64 (one host owns a whole /64).

- Per source: at most IP_MAX_ATTEMPTS attempts in any IP_WINDOW seconds, whatever the names.
- Per (name, source): after PAIR_FREE_FAILURES wrong passwords, that source must wait 1 s, 2 s,
  4 s ... (at most PAIR_MAX_DELAY) after each further one before it may try that name again. Only
  that source waits; a correct password from it clears its counter.
- Per name, across all sources: after ACCOUNT_FREE_FAILURES wrong passwords (within
  ACCOUNT_WINDOW of each other) every attempt at that name waits 1 s, 2 s ... at most
  ACCOUNT_MAX_DELAY. The wait is a ticket per (name, source) that starts when that source asks and
  is not moved by anyone else's failures, so an attacker elsewhere can slow a distributed guess
  but cannot push back the admin's turn: from a source with no recent failures a correct password
  gets in after at most ACCOUNT_MAX_DELAY seconds.
- While one attempt of a (name, source) is being verified a second one is refused, so parallel
  requests cannot slip guesses past the counters.

The counters per name and per (name, source) live in the state DB (table login_throttle), so
they survive a restart and `edge users unlock` (another process on the same file) clears them for
a running gateway. Names that are not accounts go through exactly the same counters, dummy hash
verification and answers, so the answers do not tell which names exist. The per-source window,
the tickets and the in-flight set are in memory and bounded. Limits: sources sharing one address
(NAT, a reverse proxy) share its throttle; an attacker with many addresses gets one guess per
address per ACCOUNT_MAX_DELAY once the name is slowed, so passwords must still be strong.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import math
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from edge.api import tokens
from edge.api.auth import ROLE_SCOPES, Principal
from edge.state import StateDB

if TYPE_CHECKING:
    from aiohttp import web
    from argon2 import PasswordHasher

log = logging.getLogger("edge.api.accounts")
T = TypeVar("T")

ROLES = ("admin", "technician", "viewer")
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")
MIN_PASSWORD = 10
IP_WINDOW = 60.0  # per-source rate limit on login and setup attempts
IP_MAX_ATTEMPTS = 20
PAIR_FREE_FAILURES = 3  # typos from one source before it has to wait
PAIR_MAX_DELAY = 300.0
ACCOUNT_FREE_FAILURES = 5  # wrong passwords at one name, from anywhere, before every source waits
ACCOUNT_MAX_DELAY = 15.0  # the longest a correct password from a clean source is kept waiting
ACCOUNT_WINDOW = 15 * 60.0  # a name's counter restarts after this long without a failure
THROTTLE_FORGET = 3600.0  # a (name, source) counter restarts, and its row goes, after this long
TICKET_GRACE = 60.0  # a source that comes back later than this after its wait starts a new one
MAX_SOURCES = 10_000  # memory bounds against address spraying
MAX_TICKETS = 10_000
MAX_THROTTLE_ROWS = 20_000
SESSION_IDLE = 12 * 3600
SESSION_MAX = 7 * 24 * 3600
COOKIE = "edge_session"

# argon2id with OWASP's lower-memory setting (Password Storage Cheat Sheet, "Argon2id with a
# minimum configuration of 19 MiB of memory, an iteration count of 2, and 1 degree of
# parallelism"): RFC 9106's recommended options need 64 MiB or 2 GiB per hash, which on a small
# gateway is more than the whole runtime. About 40 ms per hash on a 2-core box. Hashes made with
# other parameters (the library's 64 MiB default, used before) still verify, and are redone with
# these at the next successful login.
HASH_MEMORY_KIB = 19 * 1024
HASH_TIME_COST = 2
HASH_PARALLELISM = 1
# Every hash and verification runs on this one thread, so concurrent logins queue instead of each
# holding its own 19 MiB. One thread also means one malloc arena: hashes taken in turn by several
# worker threads leave 19 MiB resident in each thread's arena (6 workers: +115 MB of RSS).
_HASHING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
_hasher: PasswordHasher | None = None
_dummy_hash: str | None = None  # made at the first login attempt, not at import (19 MiB, 40 ms)
_dummy_lock = threading.Lock()

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
    """,
    # users.failures and users.locked_until belonged to the old hard lock and are no longer read.
    """
    CREATE TABLE login_throttle (
        name TEXT NOT NULL,
        source TEXT NOT NULL,
        failures INTEGER NOT NULL,
        last_failure REAL NOT NULL,
        PRIMARY KEY (name, source)
    );
    CREATE INDEX login_throttle_age ON login_throttle(last_failure);
    UPDATE users SET failures=0, locked_until=0;
    """,
]


class AccountError(ValueError):
    """A bad account request; the message says what is accepted, `key` and `params` are the same
    refusal in the UI's words (a key of the message catalogs and its arguments)."""

    def __init__(self, message: str, key: str, **params: str) -> None:
        super().__init__(message)
        self.key = key
        self.params = params


class LoginRefused(Exception):
    """A refused login: 401 wrong name or password, 429 wait `retry_after` seconds first.

    `reason` says which check refused it: "wrong_password" (the only one that verified a
    password), "address_limit" (the per-source window), "in_flight" (an attempt at the same name
    from the same source is being verified) or "slowed" (the name's or the pair's wait)."""

    def __init__(self, status: int, message: str, retry_after: float = 0.0, *, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.reason = reason or ("wrong_password" if status == 401 else "slowed")

    @property
    def audited_each(self) -> bool:
        """Whether the refusal is written to the audit log on its own: a wrong password, or the
        wait of a slowed name (both come after the per-source limit let the attempt through). The
        per-source limit's own refusals and those of an attempt already being checked cost the
        gateway nothing and come as fast as a client sends them: they are counted per source."""
        return self.reason in ("wrong_password", "slowed")

    @property
    def retry_after_header(self) -> str | None:
        """Whole seconds, at least 1 (a client retrying after 0 would only be refused again)."""
        return str(_secs(self.retry_after)) if self.status == 429 else None


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
        raise AccountError(
            "user name: 1-64 characters from ASCII letters (a-z, A-Z), digits and _ . @ -",
            "msg.account.bad_name",
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        roles = ", ".join(ROLES)
        raise AccountError(
            f"role {role!r} is not one of: {roles}", "msg.account.bad_role", role=str(role), roles=roles
        )
    return role


def check_password(password: str, name: str = "") -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(
            f"password: at least {MIN_PASSWORD} characters",
            "msg.account.password_short",
            min=str(MIN_PASSWORD),
        )
    if len(password) > 1024:
        raise AccountError("password: at most 1024 characters", "msg.account.password_long", max="1024")
    if name and password.lower() == name.lower():
        raise AccountError("password: must not be the user name", "msg.account.password_is_name")
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
    pw_hash = hash_password(password)
    ensure(state)
    with state.lock:
        if state.conn.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
            raise AccountError(f"user {name!r} already exists", "msg.account.exists", name=name)
        state.conn.execute(
            "INSERT INTO users(name, role, pw_hash, created, created_by) VALUES (?,?,?,?,?)",
            (name, role, pw_hash, time.time(), created_by),
        )


def list_users(state: StateDB) -> list[dict[str, Any]]:
    """Users with their state; `locked` means logins at the name are slowed by recent failures
    (until `locked_until` at the latest), not that a correct password is refused."""
    ensure(state)
    now = time.time()
    with state.lock:
        rows = state.conn.execute(
            "SELECT u.name, u.role, u.created, u.created_by, u.disabled, u.last_login, "
            "t.failures, t.last_failure FROM users u "
            "LEFT JOIN login_throttle t ON t.name = u.name AND t.source = '' ORDER BY u.name"
        ).fetchall()
    out = []
    for r in rows:
        failures = _decayed(r[6], r[7], now, ACCOUNT_WINDOW)
        slowed = account_delay(failures) > 0
        out.append(
            {
                "name": r[0],
                "role": r[1],
                "created": r[2],
                "created_by": r[3],
                "failures": failures,
                "locked": slowed,
                "locked_until": r[7] + ACCOUNT_WINDOW if slowed else None,
                "disabled": bool(r[4]),
                "last_login": r[5],
            }
        )
    return out


def token_scopes(role: str) -> frozenset[str]:
    """The scopes a token made on the authority of a user with `role` may keep: an admin's any
    (machines' pull tokens included), anyone else's only those of the role itself."""
    return tokens.VALID_SCOPES if role == "admin" else ROLE_SCOPES.get(role, frozenset())


@contextlib.contextmanager
def _one_step(state: StateDB) -> Iterator[None]:
    """One IMMEDIATE transaction under the state lock: a user's change, the end of their sessions
    and the revocation of their tokens happen together or not at all."""
    with state.lock:
        state.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if state.conn.in_transaction:  # a failed COMMIT has rolled back already
                state.conn.execute("ROLLBACK")
            raise
        state.conn.execute("COMMIT")


def update_user(
    state: StateDB,
    name: str,
    *,
    role: str | None = None,
    password: str | None = None,
    disabled: bool | None = None,
    unlock: bool = False,
) -> list[dict[str, Any]]:
    """Change a user; a new password, a role change or disabling also ends the user's sessions. A
    role change revokes the API tokens made on the user's authority that hold a scope the new role
    could not give (`token_scopes`), disabling revokes all of them; returns the tokens revoked
    (id, name, scopes)."""
    ensure(state)
    tokens.ensure(state)
    if role is not None:
        check_role(role)
    pw_hash = hash_password(check_password(password, name)) if password is not None else None
    revoked: list[dict[str, Any]] = []
    with _one_step(state):
        row = state.conn.execute("SELECT role FROM users WHERE name=?", (name,)).fetchone()
        if row is None:
            raise AccountError(f"no user {name!r}", "msg.account.no_user", name=name)
        if (role not in (None, "admin") or disabled) and row[0] == "admin" and _admins(state, name) == 0:
            raise AccountError("this is the last admin: add another admin first", "msg.account.last_admin")
        if role is not None:
            state.conn.execute("UPDATE users SET role=? WHERE name=?", (role, name))
            revoked = tokens.revoke_owned(state, name, token_scopes(role))
        if pw_hash is not None:
            state.conn.execute("UPDATE users SET pw_hash=? WHERE name=?", (pw_hash, name))
        if disabled is not None:
            state.conn.execute("UPDATE users SET disabled=? WHERE name=?", (int(disabled), name))
        if disabled:
            revoked += tokens.revoke_owned(state, name)
        if unlock or pw_hash is not None:
            clear_throttle(state, name)
        if role is not None or pw_hash is not None or disabled:
            state.conn.execute("DELETE FROM sessions WHERE user=?", (name,))
    return revoked


def delete_user(state: StateDB, name: str) -> list[dict[str, Any]]:
    """Delete a user with their sessions, and revoke every API token made on their authority;
    returns the tokens revoked (id, name, scopes)."""
    ensure(state)
    tokens.ensure(state)
    with _one_step(state):
        row = state.conn.execute("SELECT role FROM users WHERE name=?", (name,)).fetchone()
        if row is None:
            raise AccountError(f"no user {name!r}", "msg.account.no_user", name=name)
        if row[0] == "admin" and _admins(state, name) == 0:
            raise AccountError("this is the last admin: add another admin first", "msg.account.last_admin")
        revoked = tokens.revoke_owned(state, name)
        state.conn.execute("DELETE FROM sessions WHERE user=?", (name,))
        state.conn.execute("DELETE FROM users WHERE name=?", (name,))
    return revoked


def _admins(state: StateDB, other_than: str) -> int:
    row = state.conn.execute(
        "SELECT count(*) FROM users WHERE role='admin' AND disabled=0 AND name<>?", (other_than,)
    ).fetchone()
    return int(row[0])


# ---------------------------------------------------------------- login
def source_of(address: str) -> str:
    """The throttle's unit for a peer address: the IPv4 address, or the IPv6 /64 it is in."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def pair_delay(failures: int) -> float:
    """How long a source waits after its `failures`-th wrong password at one name."""
    if failures <= PAIR_FREE_FAILURES:
        return 0.0
    return min(2.0 ** min(failures - PAIR_FREE_FAILURES - 1, 30), PAIR_MAX_DELAY)


def account_delay(failures: int) -> float:
    """How long every source waits for its turn at a name with `failures` recent wrong passwords."""
    if failures <= ACCOUNT_FREE_FAILURES:
        return 0.0
    return min(2.0 ** min(failures - ACCOUNT_FREE_FAILURES - 1, 30), ACCOUNT_MAX_DELAY)


def _decayed(failures: int | None, last: float | None, now: float, keep: float) -> int:
    if failures is None or last is None or now - last > keep:
        return 0
    return int(failures)


def _throttle_key(name: str) -> str:
    # Longer than any account name can be: hashed, so a stranger cannot store kilobytes per row.
    return name if len(name) <= 64 else "#" + _sha(name)[:32]


def clear_throttle(state: StateDB, name: str | None = None) -> int:
    """Forget the failed logins at `name` (every name when None), from every source; returns how
    many counters went. A running gateway reads them from the DB at each attempt."""
    ensure(state)
    with state.lock:
        if name is None:
            cur = state.conn.execute("DELETE FROM login_throttle")
        else:
            cur = state.conn.execute("DELETE FROM login_throttle WHERE name=?", (_throttle_key(name),))
    return int(cur.rowcount)


class LoginGuard:
    """The in-memory half of the login throttle (see the module docstring): the per-source window,
    the tickets of slowed names and the attempts being verified. Thread-safe: verification runs in
    worker threads."""

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self.attempts: dict[str, deque[float]] = {}
        self.tickets: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.inflight: set[tuple[str, str]] = set()
        self.last_prune = 0.0
        self.lock = threading.Lock()

    def check_address(self, address: str) -> None:
        """Count an attempt from `address`; LoginRefused(429) past IP_MAX_ATTEMPTS per IP_WINDOW."""
        source = source_of(address)
        with self.lock:
            now = self.clock()
            q = self.attempts.setdefault(source, deque())
            while q and q[0] <= now - IP_WINDOW:
                q.popleft()
            if len(q) >= IP_MAX_ATTEMPTS:
                wait = q[0] + IP_WINDOW - now
                raise LoginRefused(
                    429,
                    f"too many attempts from this address: wait {_secs(wait)} s",
                    wait,
                    reason="address_limit",
                )
            q.append(now)
            if len(self.attempts) > MAX_SOURCES:
                self.attempts = {a: d for a, d in self.attempts.items() if d and d[-1] > now - IP_WINDOW}

    def admit(self, key: tuple[str, str], now: float, pair_ready: float, slowed_by: float) -> None:
        """Let one attempt at key = (name, source) go to verification, or LoginRefused(429)."""
        with self.lock:
            if key in self.inflight:
                raise LoginRefused(
                    429,
                    "an attempt for this name is already being checked: wait 1 s",
                    1.0,
                    reason="in_flight",
                )
            ready = pair_ready
            if slowed_by > 0:
                ticket = self.tickets.get(key)
                if ticket is None or now > ticket + TICKET_GRACE:
                    ticket = now + slowed_by
                    self.tickets[key] = ticket
                    self.tickets.move_to_end(key)
                    while len(self.tickets) > MAX_TICKETS:
                        self.tickets.popitem(last=False)
                ready = max(ready, ticket)
            if ready > now:
                wait = ready - now
                raise LoginRefused(
                    429, f"too many failed logins: wait {_secs(wait)} s", wait, reason="slowed"
                )
            self.tickets.pop(key, None)  # one verification per wait
            self.inflight.add(key)

    def done(self, key: tuple[str, str]) -> None:
        with self.lock:
            self.inflight.discard(key)

    def prune_due(self, now: float) -> bool:
        with self.lock:
            if now - self.last_prune < 60:
                return False
            self.last_prune = now
            return True


def _secs(wait: float) -> int:
    return max(1, math.ceil(wait))


def verify_login(state: StateDB, guard: LoginGuard, name: str, password: str, address: str) -> str:
    """The user's role when name/password are right; else LoginRefused (401, or 429 with the wait).

    A name with no account takes the same path (same counters, same dummy verification, same
    answers), so the answers do not tell which names exist."""
    guard.check_address(address)
    ensure(state)
    source = source_of(address)
    key = (_throttle_key(name), source)
    now = guard.clock()
    with state.lock:
        counters = {
            r[0]: (r[1], r[2])
            for r in state.conn.execute(
                "SELECT source, failures, last_failure FROM login_throttle WHERE name=? AND source IN ('', ?)",
                key,
            )
        }
        row = state.conn.execute("SELECT role, pw_hash, disabled FROM users WHERE name=?", (name,)).fetchone()
    pair_fails = _decayed(*counters.get(source, (None, None)), now, THROTTLE_FORGET)
    pair_last = counters.get(source, (0, 0.0))[1]
    name_fails = _decayed(*counters.get("", (None, None)), now, ACCOUNT_WINDOW)
    guard.admit(key, now, pair_last + pair_delay(pair_fails), account_delay(name_fails))
    try:
        # Made before the branch, so the first attempt costs the same whether the name exists.
        dummy = _dummy()
        good = _verify(row[1] if row is not None else dummy, password)
        if row is None or not good or row[2]:
            _record_failure(state, guard, key, now)
            raise LoginRefused(401, "wrong user name or password", reason="wrong_password")
    finally:
        guard.done(key)
    role, pw_hash, _ = row
    # Hashed outside the DB lock; stored only if the password was not changed meanwhile.
    rehashed = hash_password(password) if hasher().check_needs_rehash(pw_hash) else None
    with state.lock:
        state.conn.execute("DELETE FROM login_throttle WHERE name=? AND source=?", key)
        if rehashed is not None:
            state.conn.execute(
                "UPDATE users SET pw_hash=? WHERE name=? AND pw_hash=?", (rehashed, name, pw_hash)
            )
    return str(role)


def _record_failure(state: StateDB, guard: LoginGuard, key: tuple[str, str], now: float) -> None:
    # Counted in SQL on the row as it is now: failures from other sources, or an unlock from the
    # CLI, may have changed it since it was read before the verification.
    bump = (
        "INSERT INTO login_throttle(name, source, failures, last_failure) VALUES (?, ?, 1, ?) "
        "ON CONFLICT(name, source) DO UPDATE SET last_failure=excluded.last_failure, failures="
        "CASE WHEN login_throttle.last_failure < ? THEN 1 ELSE login_throttle.failures + 1 END"
    )
    with state.lock:
        state.conn.execute("BEGIN IMMEDIATE")
        try:
            state.conn.execute(bump, (key[0], key[1], now, now - THROTTLE_FORGET))
            state.conn.execute(bump, (key[0], "", now, now - ACCOUNT_WINDOW))
            if guard.prune_due(now):
                # bounded: old counters go, and past the cap the oldest ones
                state.conn.execute(
                    "DELETE FROM login_throttle WHERE last_failure < ?", (now - THROTTLE_FORGET,)
                )
                state.conn.execute(
                    "DELETE FROM login_throttle WHERE rowid IN (SELECT rowid FROM login_throttle "
                    "ORDER BY last_failure DESC LIMIT -1 OFFSET ?)",
                    (MAX_THROTTLE_ROWS,),
                )
            state.conn.execute("COMMIT")
        except BaseException:
            if state.conn.in_transaction:  # a failed COMMIT has rolled back already
                state.conn.execute("ROLLBACK")
            raise


def _on_hashing_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on the one argon2 thread; the caller (a worker thread, or the CLI) waits its turn."""
    return _HASHING.submit(fn, *args).result()


def hasher() -> PasswordHasher:
    """The argon2id hasher with the parameters above; argon2 is imported at the first use (about
    1 MB that a gateway nobody logs in to does not need)."""
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher(
            time_cost=HASH_TIME_COST,
            memory_cost=HASH_MEMORY_KIB,
            parallelism=HASH_PARALLELISM,
            hash_len=32,
            salt_len=16,
        )
    return _hasher


def hash_password(password: str) -> str:
    """An argon2id hash of `password` with hasher()'s parameters (computed on the argon2 thread)."""
    return _on_hashing_thread(hasher().hash, password)


def _dummy() -> str:
    """The hash a name without an account is verified against, with hasher()'s parameters so the
    two take the same time; its password is random and thrown away."""
    global _dummy_hash
    with _dummy_lock:
        if _dummy_hash is None:
            _dummy_hash = hash_password(secrets.token_urlsafe(24))
        return _dummy_hash


def _verify(pw_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _on_hashing_thread(hasher().verify, pw_hash, password)
    except (VerificationError, InvalidHashError):  # VerifyMismatchError is a VerificationError
        return False


# ---------------------------------------------------------------- sessions
def sign_in(state: StateDB, user: str, address: str = "") -> tuple[str, str]:
    """A user who proved who they are (first setup, login, password change) gets a session, and
    the account's last login is now: every way in goes through here, so the users page never
    shows an admin who set the gateway up as one who never logged in."""
    ensure(state)
    with state.lock:
        state.conn.execute("UPDATE users SET last_login=? WHERE name=?", (time.time(), user))
    return create_session(state, user, address)


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


def find_session(state: StateDB, sid: str, *, touch: bool = True) -> Session | None:
    """The live session whose cookie is `sid`; an expired one is deleted. A request the user made
    (`touch`) moves its last use (at most once a minute); a look that is not the user's doing (an
    open live stream asking again whether its session still holds, a page's own periodic refresh)
    does not, so a session left with only such a look still ends at its idle timeout."""
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
        if touch and now - row[4] > 60:  # touching every request would be a write per request
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


def open_accounts(state: StateDB) -> Accounts:
    """The accounts of the state DB `state`, with a setup code while there is no user yet."""
    ensure(state)
    code = None
    if user_count(state) == 0:
        code = SetupCode()
        # The message carries the code itself so every log format (logfmt, journald) shows it.
        log.warning(
            "no user accounts yet: open the web UI and create the admin with setup code %s", code.code
        )
    return Accounts(state, LoginGuard(), code)


def session_authenticator(state: StateDB) -> Callable[..., Principal | None]:
    """Who a request's session cookie belongs to (None: no cookie, or no live session); `touch`
    as in `find_session`."""

    def by_session(request: web.Request, *, touch: bool = True) -> Principal | None:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        session = find_session(state, sid, touch=touch)
        return session_principal(session) if session else None

    return by_session
