"""The journal's SQLite schema, its versions and the migrations between them.

Each entry of `MIGRATIONS` moves a file one version up, in its own transaction, so a file is
always at exactly one version (`meta.schema_version`). Never edit a released entry: add one.
"""

from __future__ import annotations

import sqlite3
import uuid

from edge.model import PRIVACY_RANK, SENSITIVE_EVENT_KINDS
from edge.state import split_sql

# Persisted counters (table `counters`): drops and errors survive restarts, so nothing is lost
# silently across a reboot either. `rows` is kept in step with the journal by every transaction
# that inserts or deletes, so health never needs a full `count(*)` scan of a multi-GiB file.
COUNTERS = (
    "rows",
    "dropped_oldest",  # unsent (or undelivered) records deleted to make room (when_full: drop_oldest)
    "dropped_newest",  # incoming records refused because the buffer was full (when_full: drop_newest)
    "dropped_overflow",  # records refused because the in-memory queue overflowed while SQLite failed
    "history_trimmed",  # delivered records deleted before keep_history because of max_bytes
    "retention_deleted",  # delivered records deleted after their class's retention (normal expiry)
    "disk_full",  # commits that failed with SQLITE_FULL
    "write_errors",  # commits that failed for any reason (disk full included)
    "retention_expired",  # personal/sensitive records deleted at their retention before delivery
    "snapshots_expired",  # snapshot files deleted at the retention of their class
    "sealed_existing",  # sensitive records written in clear before a sealer, sealed afterwards (no v2/v3 row)
)

V1 = """
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    point TEXT NOT NULL,      -- a reading's point id, or an event's source
    value,                    -- a reading's value (NULL for an event)
    quality INTEGER,          -- a reading's quality (| 4 for bool values); NULL for an event
    kind TEXT,                -- an event's kind; NULL for a reading
    severity TEXT,
    payload TEXT              -- an event's payload as JSON
);
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,       -- 'sink' or 'consumer'
    seq INTEGER NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

V2_COUNTERS = COUNTERS[1:8]  # the counters v2 created (later ones come with their own version)

# v2: persisted drop/error counters and an exact row count. No index is added to `journal` on
# purpose: a partial index on events measured 25 % off the insert rate.
V2 = (
    """
INSERT OR IGNORE INTO counters(name, value) SELECT 'rows', count(*) FROM journal;
UPDATE counters SET value = (SELECT count(*) FROM journal) WHERE name = 'rows';
"""
    + "\n".join(f"INSERT OR IGNORE INTO counters(name, value) VALUES ('{c}', 0);" for c in V2_COUNTERS)
    + "\nINSERT OR IGNORE INTO meta(key, value) SELECT 'last_seq', coalesce(max(seq), 0) FROM journal;\n"
)

# v3: each record's privacy class (PRIVACY_RANK: 0 public, 1 personal, 2 sensitive), so retention
# applies per class. Adding a column with a constant default rewrites no row. Events already
# stored are classified as `edge.model.event_privacy` would without the site's points (the
# payload's `privacy`, else the health-measurement kinds); readings already stored keep 0: the
# class of a point lives in the site file, not the journal.
_NAMED = " ".join(f"WHEN '{c}' THEN {r}" for c, r in PRIVACY_RANK.items())
_KINDS = ", ".join(f"'{k}'" for k in sorted(SENSITIVE_EVENT_KINDS))
V3 = f"""
ALTER TABLE journal ADD COLUMN privacy INTEGER NOT NULL DEFAULT 0;
UPDATE journal SET privacy =
    CASE (CASE WHEN json_valid(payload) THEN json_extract(payload, '$.privacy') END) {_NAMED}
    ELSE (CASE WHEN kind IN ({_KINDS}) THEN 2 ELSE 0 END) END
    WHERE kind IS NOT NULL;
INSERT OR IGNORE INTO counters(name, value) VALUES ('retention_expired', 0);
INSERT OR IGNORE INTO counters(name, value) VALUES ('snapshots_expired', 0);
"""

# Sensitive payloads and values may be sealed (a BLOB envelope in `payload` or `value`, see
# edge.privacy.atrest) without a new version: the columns take any type, and a file written by an
# older version is sealed in place by `Journal.seal_existing` (counted in `sealed_existing`, a
# counter row created on first use).
MIGRATIONS: list[str] = [V1, V2, V3]
SCHEMA_VERSION = len(MIGRATIONS)


#: the journal's meta key naming its line of descent (a uuid4 hex): given at its creation, or at
#: the first writable open of a journal made before it existed; a backup copies it and a restore
#: keeps the archive's, so a restore can tell a journal that went on from the archive's after
#: retention deleted the archive's records from it (edge.store.backup.not_descended). Not a schema
#: version: an older release opens such a journal and leaves the key alone.
JOURNAL_ID_META = "journal_id"
#: the last seq a journal made before `journal_id` existed had issued when this release gave it
#: one (0 for a journal created with it): an archive of that journal without an id (a backup taken
#: before the upgrade) whose newest record is at or below it is of the same line
JOURNAL_ID_SINCE_META = "journal_id_since"


class SchemaTooNew(RuntimeError):
    pass


def schema_version(conn: sqlite3.Connection) -> int:
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, path: str, upto: int = SCHEMA_VERSION) -> int:
    """Bring the file to version `upto` (default: the newest); returns the version it had."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path}: journal schema version {version} is newer than this program understands "
            f"({SCHEMA_VERSION}); upgrade community-edge or restore an older database"
        )
    for v in range(version, upto):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in split_sql(MIGRATIONS[v]):
                conn.execute(stmt)
            conn.execute(
                "INSERT INTO meta(key, value) VALUES('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (v + 1,),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT has rolled back already
                conn.execute("ROLLBACK")
            raise
    return version


def journal_id(conn: sqlite3.Connection) -> str | None:
    """The journal's `journal_id`, None when it has none (made before it existed)."""
    row = conn.execute("SELECT value FROM meta WHERE key=?", (JOURNAL_ID_META,)).fetchone()
    return str(row[0]) if row and row[0] else None


def ensure_journal_id(conn: sqlite3.Connection) -> str:
    """The journal's `journal_id`, given a new one (uuid4 hex) in its own transaction where it has
    none. For the writer's connection only: a read-only open must not write."""
    known = journal_id(conn)
    if known is not None:
        return known
    conn.execute("BEGIN IMMEDIATE")
    try:
        # read again under the write lock: another process may have given it one meanwhile
        known = journal_id(conn)
        if known is None:
            known = uuid.uuid4().hex
            row = conn.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
            top = conn.execute("SELECT max(seq) FROM journal").fetchone()[0]
            issued = max(int(row[0]) if row and row[0] is not None else 0, int(top or 0))
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                [(JOURNAL_ID_META, known), (JOURNAL_ID_SINCE_META, issued)],
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return known
