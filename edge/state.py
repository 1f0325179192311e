"""The state database: rules and their history, rule state, accounts, tokens, audit, dead letters.

Separate from the journal so the journal keeps exactly one writer. Writes here are small and rare;
each component owns its tables and migrates them with `migrate(component, steps)`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from edge.paths import sqlite_uri

#: the state database's page cache, in KiB
STATE_CACHE_KIB = 512
#: its WAL is checkpointed at this many pages (SQLite's default: 1000) and cut back to this size
#: after a checkpoint: it shares the journal's filesystem, and a WAL left at the size a busy
#: hour grew it to holds that space for good (SQLite reuses a WAL file, it does not shrink it)
STATE_WAL_PAGES = 64
STATE_WAL_LIMIT = 256 * 1024
#: how long giving the WAL back waits for the connection or for a reader, in ms
GIVE_BACK_WAIT_MS = 200


def other_journal(path: str | os.PathLike[str], journal: str | os.PathLike[str]) -> str | None:
    """The journal a database beside it (the state DB, keys.db: their `belongs_to`) records as its
    own when that is not `journal`, read only; None when it records none yet or cannot be read (the
    open that follows says why). `edge check` and the read-only commands ask it before they read
    another site's data as this one's."""
    try:
        conn = sqlite3.connect(sqlite_uri(path), uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT journal FROM belongs_to").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return None if row is None or row[0] == Path(journal).name else str(row[0])


def claim_problem(path: str | os.PathLike[str], journal: str | os.PathLike[str]) -> str | None:
    """What to say of a state DB at `path` that records another journal than `journal` (two sites
    sharing a folder), None when it does not (or does not exist yet): `edge check`, the audit and
    sync commands say it before reading another site's data as this one's."""
    other = other_journal(path, journal) if Path(path).exists() else None
    if other is None:
        return None
    return (
        f"the state database {path} goes with the journal {other}, not with {Path(journal).name}: "
        "give each site a folder of its own (storage.path), or a state database of its own "
        "(storage.state_path)"
    )


def claim(conn: sqlite3.Connection, journal: str) -> str:
    """Record `journal` (a file name) in `conn`'s `belongs_to` as the journal this database goes with
    (the state DB, keys.db), when none is, in a transaction of its own (another process may be
    first: checked inside); returns the journal recorded, `journal` or another's, for the caller
    to refuse."""
    conn.execute("CREATE TABLE IF NOT EXISTS belongs_to (journal TEXT NOT NULL)")
    row = conn.execute("SELECT journal FROM belongs_to").fetchone()
    if row is None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT journal FROM belongs_to").fetchone()
            if row is None:
                conn.execute("INSERT INTO belongs_to (journal) VALUES (?)", (journal,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return journal if row is None else str(row[0])


class StateDBError(RuntimeError):
    """The state database cannot be opened; the message names the file and what to do."""


class StateDB:
    """`journal`: the journal the site's state goes with (its file name is recorded). The first
    opener that names one claims an unclaimed database; another journal's is refused
    (StateDBError): two sites sharing one state database share their accounts, API tokens, rules
    and resident data (a token made for one works on the other)."""

    def __init__(self, path: str, journal: str | None = None) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            _create_owned_like_folder(Path(path))
        # check_same_thread=False: the CLI and tests may touch it from worker threads; the lock
        # keeps statements on the one connection serialised.
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        except sqlite3.Error as exc:
            raise StateDBError(f"{path}: cannot open the state database: {exc}") from None
        self.conn.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")  # rules and accounts are few and precious
            self.conn.execute("PRAGMA foreign_keys=ON")
            # a small database (rules, accounts, cursors, audit) on one connection for as long as
            # the gateway runs: its page cache capped, not SQLite's default 2 MB
            self.conn.execute(f"PRAGMA cache_size=-{STATE_CACHE_KIB}")
            self.conn.execute(f"PRAGMA wal_autocheckpoint={STATE_WAL_PAGES}")
            self.conn.execute(f"PRAGMA journal_size_limit={STATE_WAL_LIMIT}")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions "
                "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            if journal is not None:
                self._claim(Path(journal).name)
        except StateDBError:
            self.conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            if isinstance(exc, sqlite3.OperationalError):  # locked, read-only, disk I/O: not damage
                raise StateDBError(f"{path}: cannot use the state database: {exc}") from None
            raise StateDBError(
                f"{path}: the state database (rules, accounts, API tokens, audit log) is damaged "
                f"or not a database ({exc}); restore it from a backup, or move it aside to start "
                "with an empty one (rules, accounts and tokens are then gone)"
            ) from None

    def _claim(self, journal: str) -> None:
        """Record `journal` (a file name) as the one this database goes with, when none is;
        refuse another's."""
        owner = claim(self.conn, journal)
        if owner != journal:
            raise StateDBError(
                f"{self.path}: the state database goes with the journal {owner}, not with {journal}: "
                "two sites sharing it would share their accounts, API tokens, rules and residents' "
                "data (a token made for one would work on the other). Give each site a folder of its "
                "own (storage.path), or a state database of its own (storage.state_path); if this "
                f"journal was renamed, give it back its name {owner}; nothing was changed"
            )

    def version(self, component: str) -> int:
        row = self.conn.execute(
            "SELECT version FROM schema_versions WHERE component=?", (component,)
        ).fetchone()
        return int(row[0]) if row else 0

    def migrate(self, component: str, steps: Sequence[str]) -> int:
        """Apply `steps[v:]` (SQL scripts) for a component at version v, each in one transaction.

        The version is read again inside each step's IMMEDIATE transaction: two processes opening
        an old database at once (the service and `edge users add`) each apply a step only if the
        other has not, instead of both running it (an ALTER TABLE twice fails). A component whose
        stored version is above `len(steps)` was written by a newer release: refused, as the
        journal refuses a newer schema, since this program would misread its tables."""
        with self.lock:
            stored = self.version(component)
            if stored > len(steps):
                raise StateDBError(too_new(self.path, component, stored, len(steps)))
            while self.version(component) < len(steps):
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    current = self.version(component)
                    if current < len(steps):
                        for statement in split_sql(steps[current]):
                            self.conn.execute(statement)
                        self.conn.execute(
                            "INSERT INTO schema_versions(component, version) VALUES(?, ?) "
                            "ON CONFLICT(component) DO UPDATE SET version=excluded.version",
                            (component, current + 1),
                        )
                    self.conn.execute("COMMIT")
                except BaseException:
                    # SQLite has already rolled back on some errors (a full disk, an I/O error,
                    # RAISE(ROLLBACK)): a ROLLBACK then fails and would hide the real cause
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
            return len(steps)

    def give_wal_back(self) -> bool:
        """Copy the WAL into the file and truncate it to nothing (the journal asks when it holds
        for lack of disk space: `Journal.add_space_reclaimer`). Waits GIVE_BACK_WAIT_MS at most
        for the connection and for readers, never a transaction's length; False when it could
        not finish (tried again at the journal's next ask)."""
        if self.path == ":memory:" or not self.lock.acquire(timeout=GIVE_BACK_WAIT_MS / 1000):
            return False
        try:
            if self.conn.in_transaction:
                return False
            self.conn.execute(f"PRAGMA busy_timeout={GIVE_BACK_WAIT_MS}")
            try:
                busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                self.conn.execute("PRAGMA busy_timeout=10000")
            return not busy
        except sqlite3.Error:
            return False
        finally:
            self.lock.release()

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def _create_owned_like_folder(path: Path) -> None:
    """A state DB that root creates (`edge tokens create` before the first start) in a folder
    another user owns (the service's data dir) is created owned by that folder's owner and group,
    so the service can open it; SQLite gives its -wal and -shm the database file's owner."""
    if os.geteuid() != 0 or path.exists():
        return
    folder = os.stat(path.parent)
    if folder.st_uid == 0:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # created meanwhile by another process: its owner stands
    try:
        os.fchown(fd, folder.st_uid, folder.st_gid)
    finally:
        os.close(fd)


def too_new(path: str, component: str, stored: int, known: int) -> str:
    """The refusal of a state database a newer release wrote (at start and by `edge restore`)."""
    return (
        f"{path}: the state database's {component!r} tables have schema version {stored}, newer "
        f"than this program understands ({known}); upgrade community-edge or restore an older "
        "state database"
    )


def split_sql(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
