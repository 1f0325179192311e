"""The audit log: who logged in, changed a rule, wrote a point, created a token — in the state DB.

The log is append-only and hash-chained, so that an edit or a deletion is found by `verify`:

- every entry stores `prev_hash`, the hash of the entry before it (64 zeros for the first), and
  `hash` = SHA-256 over `prev_hash`, a newline and the entry's canonical encoding (`canonical`:
  compact JSON with sorted keys of its id, ts, actor, action, target and detail);
- a separate head record (table `audit_head`, one row) holds the chain's first and last entry
  and the last hash, so that entries cut from the end are found too, not only from the middle;
- entries written before the chain existed are chained, in id order, by the schema migration
  that brings in the chain, in its own transaction (`ensure`, once per file); never again later:
  from then on an entry without a hash, or a head that asks for chaining (`pending`), is reported
  as a break, and nothing but that migration writes a hash other than its entry's own;
- `verify` and `export` only read: given a path they open the file read-only, so checking a log
  never changes it;
- `edge restore`, which puts a backup's state DB in place of the live one, carries the replaced
  log's entries written since the backup into it as they are (`carry_forward`) and audits itself,
  so a restore neither loses entries nor gives their ids to others.

What the chain does not stop: anyone who can write the state DB file can rewrite an entry and
recompute every hash after it and the head (there is no secret in the chain), cut the end and move
the head back, or put an older copy of the whole file in place. The chain makes a change
detectable only against a copy of a hash kept elsewhere: keep the head hash that
`edge audit verify` prints (or an export) off the gateway, and a later rewrite of anything before
it no longer matches. It also turns a careless edit with the sqlite3 shell, or a tool that does not
know the scheme, into a reported break.

`record()` adds one SHA-256 over a few hundred bytes and one small UPDATE to the transaction it
already was; the state DB's fsync per write stays the cost that matters.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from edge.state import StateDB, split_sql

log = logging.getLogger(__name__)

#: the previous hash of the chain's first entry
GENESIS = "0" * 64

MIGRATIONS = [
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,      -- user name, token name, 'rule:<id>', 'system'
        action TEXT NOT NULL,     -- e.g. login, login_failed, rule_update, point_write, token_create
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_ts ON audit(ts);
    """,
    # the hash chain; `pending` was the old way to ask for the entries written before it to be
    # chained: `ensure` now chains them in this step's own transaction and clears it
    f"""
    ALTER TABLE audit ADD COLUMN prev_hash TEXT;
    ALTER TABLE audit ADD COLUMN hash TEXT;
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        first_id INTEGER,            -- the chain's first entry; NULL while the log is empty
        first_prev TEXT NOT NULL,    -- the prev_hash that entry must carry
        last_id INTEGER,             -- the chain's last entry
        last_hash TEXT NOT NULL,     -- its hash: the next entry's prev_hash
        pending INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO audit_head(id, first_prev, last_hash, pending) VALUES (1, '{GENESIS}', '{GENESIS}', 1);
    """,
]

_COLUMNS = "id, ts, actor, action, target, detail, prev_hash, hash"
_ready: weakref.WeakSet[StateDB] = weakref.WeakSet()  # state DBs migrated and chained in this process


CHAIN_VERSION = 2  # the audit schema version that brought in the hash chain


def ensure(state: StateDB) -> None:
    """Bring the audit tables to the newest version. The step to the chain also chains the entries
    written before it, in the same transaction: a file is either not chained yet or chained, and
    nothing later (a start, a verify) chains unhashed entries, which would hash a forgery in."""
    if state in _ready:
        return
    with state.lock:
        if state.version("audit") < CHAIN_VERSION:
            state.migrate("audit", MIGRATIONS[: CHAIN_VERSION - 1])
            _introduce_chain(state)
        elif _interrupted(state.conn):
            _finish_interrupted(state)
    state.migrate("audit", MIGRATIONS)
    _ready.add(state)


def _interrupted(conn: sqlite3.Connection) -> bool:
    """A log whose step to the chain ran in a release that chained its entries in a transaction
    of its own, stopped between the two: the chain's tables, `pending` set, not one entry hashed
    and no chained entry on record. The rest of that migration, not a forgery (a forged
    `pending` on a chained log has hashed entries or a first entry)."""
    try:
        head = conn.execute("SELECT pending, first_id FROM audit_head WHERE id=1").fetchone()
    except sqlite3.OperationalError:
        return False
    if head is None or not head[0] or head[1] is not None:
        return False
    return conn.execute("SELECT 1 FROM audit WHERE hash IS NOT NULL LIMIT 1").fetchone() is None


def _finish_interrupted(state: StateDB) -> None:
    conn = state.conn
    with state.lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _interrupted(conn):  # another process may have finished it: checked inside
                _chain_unchained(conn, GENESIS, None)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _introduce_chain(state: StateDB) -> None:
    """The migration to CHAIN_VERSION: its SQL, the chaining of every entry already there, and the
    version, in one IMMEDIATE transaction (another process may have done it: checked inside)."""
    conn = state.conn
    with state.lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if state.version("audit") == CHAIN_VERSION - 1:
                for statement in split_sql(MIGRATIONS[CHAIN_VERSION - 1]):
                    conn.execute(statement)
                _chain_unchained(conn, GENESIS, None)
                conn.execute(
                    "INSERT INTO schema_versions(component, version) VALUES('audit', ?) "
                    "ON CONFLICT(component) DO UPDATE SET version=excluded.version",
                    (CHAIN_VERSION,),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT has rolled back already
                conn.execute("ROLLBACK")
            raise


def _chain_unchained(conn: sqlite3.Connection, prev: str, first_id: int | None) -> None:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM audit WHERE hash IS NULL ORDER BY id").fetchall()
    for row in rows:
        digest = entry_hash(prev, _row_canonical(row))
        conn.execute("UPDATE audit SET prev_hash=?, hash=? WHERE id=?", (prev, digest, row["id"]))
        prev = digest
        first_id = row["id"] if first_id is None else first_id
    last_id = rows[-1]["id"] if rows else None
    conn.execute(
        "UPDATE audit_head SET pending=0, first_id=?, last_id=COALESCE(?, last_id), last_hash=? WHERE id=1",
        (first_id, last_id, prev),
    )
    if rows:
        log.info("chained %d audit entries written before the audit log had its hash chain", len(rows))


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """IMMEDIATE: the read of the last hash and the append are one step, also against another
    process (the CLI beside a running gateway), so the chain never forks. Inside a caller's
    transaction, a savepoint of it."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT audit_chain")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO audit_chain")
            conn.execute("RELEASE audit_chain")
            raise
        conn.execute("RELEASE audit_chain")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT has rolled back already
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def canonical(entry_id: int, ts: float, actor: str, action: str, target: str, detail: str) -> bytes:
    """The bytes an entry's hash covers. `detail` as stored (JSON text) is decoded first, so the
    export's object re-encodes to the same bytes; text that is not JSON is covered as it is."""
    entry: dict[str, Any] = {"id": entry_id, "ts": ts, "actor": actor, "action": action, "target": target}
    try:
        entry["detail"] = json.loads(detail)
    except (TypeError, ValueError):
        entry["detail_raw"] = detail
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(prev_hash: str, encoded: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii", "replace") + b"\n" + encoded).hexdigest()


def written_value(privacy: Any, value: Any) -> dict[str, Any]:
    """What a `point_write` entry keeps of the value written to a point of class `privacy` (None:
    an unknown point): the value of a public point; of a personal or sensitive one (a plate, a
    resident's reference) only the class, as `value_class`. The log is kept for good and not
    sealed; the value itself reaches the journal, sealed where the site seals, and leaves it at
    its class's retention."""
    if privacy is None or str(privacy) == "public":
        return {"value": value}
    return {"value_class": str(privacy)}


def written_reason(privacy: Any, reason: str) -> str:
    """What a `point_write` entry (or a caller below the point's class) gets of a write's outcome:
    a device's answer may quote the point's value ("read-back gave 12345.7"), so of a personal or
    sensitive point only that there was one."""
    if not reason or privacy is None or str(privacy) == "public":
        return reason
    return f"withheld: the outcome of a write to a {privacy} point may quote its value"


def record(state: StateDB, actor: str, action: str, target: str = "", **detail: Any) -> None:
    record_above(state, 0, actor, action, target, **detail)


def record_above(state: StateDB, floor: int, actor: str, action: str, target: str = "", **detail: Any) -> int:
    """`record`, with an id above `floor` as well as above every entry's: a restore that could not
    carry the replaced log's entries (`carry_forward`) numbers its own entry above them, so no id
    that log used names another entry here. The chain links by hash, so the ids skipped break
    nothing `verify` checks. Returns the entry's id."""
    ensure(state)
    ts = time.time()
    text = json.dumps(detail, ensure_ascii=False, default=str)
    conn = state.conn
    with state.lock, _transaction(conn):
        head = conn.execute("SELECT last_id, last_hash FROM audit_head WHERE id=1").fetchone()
        top = max(conn.execute("SELECT COALESCE(MAX(id), 0) FROM audit").fetchone()[0], floor)
        if head is not None:
            prev, entry_id = head["last_hash"], max(top, head["last_id"] or 0) + 1
        else:  # the head record was deleted: go on from the last entry; verify reports the loss
            last = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            prev, entry_id = (last["hash"] if last and last["hash"] else GENESIS), top + 1
        digest = entry_hash(prev, canonical(entry_id, ts, actor, action, target, text))
        conn.execute(
            f"INSERT INTO audit({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
            (entry_id, ts, actor, action, target, text, prev, digest),
        )
        conn.execute(
            "UPDATE audit_head SET first_id=COALESCE(first_id, ?), last_id=?, last_hash=? WHERE id=1",
            (entry_id, entry_id, digest),
        )
    return int(entry_id)


@dataclass(frozen=True, slots=True)
class Carried:
    """What a restore carried of the audit log it replaces (`carry_forward`)."""

    #: entries of the replaced log appended to the restored one, as they were (ids, hashes)
    entries: int
    #: the replaced log's last entry (None: it had none, or it could not be read)
    replaced_last_id: int | None
    #: why its entries were not carried (None: they were, or there were none to carry)
    problem: str | None = None


def carry_forward(restored: StateDB, replaced: str) -> Carried:
    """Carry into the restored state DB's log the entries the replaced state DB's log (at
    `replaced`) holds beyond it: a restore must not erase who did what since the backup (a
    `privacy_forget`, a login), nor let the next entries take the ids those had.

    The replaced log went on from the archive's where it holds the archive's last entry with the
    same hash (the hash covers every entry before it through the chain): its later entries are
    appended as they are, with their ids and hashes, and the head takes the replaced log's, so the
    restored log is the replaced one and `verify` says of it what it said of that one. Any other
    log (another box's, one not chained, one that cannot be read) is not carried: its last id is
    returned, for the restore's own entry to be numbered above it (`record_above`)."""
    ensure(restored)
    conn = restored.conn
    try:
        other = sqlite3.connect(replaced, timeout=30)  # read-write for a -wal without its -shm
    except sqlite3.Error as exc:
        return Carried(0, None, f"{replaced} cannot be read ({exc})")
    other.row_factory = sqlite3.Row
    try:
        other.execute("PRAGMA query_only=1")
        other.execute("BEGIN")
        if not _chained(other, replaced):
            return Carried(0, None)  # nothing was ever recorded there
        theirs = other.execute(
            "SELECT first_id, first_prev, last_id, last_hash FROM audit_head WHERE id=1"
        ).fetchone()
        top = other.execute("SELECT MAX(id) FROM audit").fetchone()[0]
        last = max(int(top or 0), int(theirs["last_id"] or 0) if theirs else 0) or None
        with restored.lock:
            ours = conn.execute(
                "SELECT first_id, first_prev, last_id, last_hash FROM audit_head WHERE id=1"
            ).fetchone()
            if theirs is None or ours is None:
                return Carried(0, last, f"{replaced}: its audit log has no head record")
            if theirs["last_id"] is None and top is None:
                return Carried(0, None)  # a log with no entry yet: nothing to carry, no id taken
            if ours["last_id"] is None:
                went_on = theirs["first_prev"] == ours["first_prev"]
            else:
                row = other.execute("SELECT hash FROM audit WHERE id=?", (ours["last_id"],)).fetchone()
                went_on = row is not None and row["hash"] == ours["last_hash"]
            if not went_on:
                mine = conn.execute("SELECT hash FROM audit WHERE id=?", (theirs["last_id"],)).fetchone()
                if theirs["last_id"] is not None and mine is not None and mine["hash"] == theirs["last_hash"]:
                    return Carried(0, last)  # the archive's log went on from the replaced one
                return Carried(0, last, f"the audit log of {replaced} did not go on from the backup's")
            rows = other.execute(
                f"SELECT {_COLUMNS} FROM audit WHERE id > ? ORDER BY id", (ours["last_id"] or 0,)
            ).fetchall()
            with _transaction(conn):
                conn.executemany(
                    f"INSERT INTO audit({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", [tuple(r) for r in rows]
                )
                if rows or (theirs["last_id"] or 0) > (ours["last_id"] or 0):
                    conn.execute(
                        "UPDATE audit_head SET first_id=?, first_prev=?, last_id=?, last_hash=? WHERE id=1",
                        (theirs["first_id"], theirs["first_prev"], theirs["last_id"], theirs["last_hash"]),
                    )
            return Carried(len(rows), last)
    except (sqlite3.Error, NoChain) as exc:
        return Carried(0, None, f"the audit log of {replaced} cannot be read ({exc})")
    finally:
        other.close()


def entries(
    state: StateDB,
    limit: int = 200,
    before_id: int | None = None,
    *,
    actor: str | None = None,
    action: str | None = None,
) -> list[dict[str, Any]]:
    """The newest `limit` entries (below `before_id`) by `actor` and of `action` when given: the
    filters are in the query, so `limit` counts matches, however many other entries are newer."""
    ensure(state)
    conds: list[str] = []
    args: list[Any] = []
    for cond, value in (("id < ?", before_id), ("actor = ?", actor), ("action = ?", action)):
        if value is not None:
            conds.append(cond)
            args.append(value)
    sql = "SELECT id, ts, actor, action, target, detail FROM audit"
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    sql += " ORDER BY id DESC LIMIT ?"
    with state.lock:
        rows = state.conn.execute(sql, (*args, limit)).fetchall()
    return [
        {"id": r[0], "ts": r[1], "actor": r[2], "action": r[3], "target": r[4], "detail": json.loads(r[5])}
        for r in rows
    ]


#: what a caller who may not see personal data reads instead of an entry's actor and target
WITHHELD = "redacted"


def withheld(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as a caller below the `personal` class reads it (an API token without `admin`):
    its id, time and action, and of its detail only numbers and flags (counts, versions,
    `commented`); the actor and target (user names, typed login names, addresses) and every text,
    list or object of the detail (reasons, addresses, names, comments) withheld, marked
    `redacted: true`. Who did what is personal: a user's logins and acknowledgements say where
    they were and when."""
    detail = entry.get("detail")
    kept = {
        key: value
        for key, value in (detail.items() if isinstance(detail, dict) else ())
        if isinstance(value, bool | int | float)
    }
    return {
        "id": entry["id"],
        "ts": entry["ts"],
        "actor": WITHHELD,
        "action": entry["action"],
        "target": WITHHELD,
        "detail": kept,
        "redacted": True,
        "privacy": "personal",
    }


# ---------------------------------------------------------------- verify and export
@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first place the chain does not hold: the entry (None: the log as a whole) and why."""

    entry_id: int | None
    reason: str
    entry: dict[str, Any] | None = None  # that entry as `export` writes it


@dataclass(frozen=True, slots=True)
class Verification:
    checked: int  # entries whose hash and link were checked before the break (all when intact)
    last_id: int | None
    last_hash: str
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _exported(row: sqlite3.Row) -> dict[str, Any]:
    entry = json.loads(_row_canonical(row))
    entry["prev_hash"], entry["hash"] = row["prev_hash"], row["hash"]
    return entry


class NoChain(RuntimeError):
    """The file holds no hash-chained audit log that this program can read."""


class NotChainedYet(NoChain):
    """The audit log is from before the chain: `ensure` (its migration) chains it, once."""


@contextlib.contextmanager
def _snapshot(source: StateDB | str | Path) -> Iterator[sqlite3.Connection | None]:
    """One read transaction on a read-only connection of its own: the head and every entry as of
    one moment, while the gateway goes on appending (WAL readers do not block the writer) and
    without holding the state lock for the whole read. A database in memory has only its one
    connection. Yields None for a state DB that has no audit log yet (nothing was ever recorded);
    raises NoChain when its log is not chained or is of a newer release."""
    if isinstance(source, StateDB) and source.path == ":memory:":
        with source.lock:
            yield source.conn if _chained(source.conn, source.path) else None
        return
    path = source.path if isinstance(source, StateDB) else str(source)
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise NoChain(f"{path}: cannot open the state database read-only: {exc}") from None
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("BEGIN")
        yield conn if _chained(conn, path) else None
    finally:
        conn.close()


def _chained(conn: sqlite3.Connection, path: str) -> bool:
    """True when the file holds a chained audit log, False when it has none at all yet."""
    try:
        row = conn.execute("SELECT version FROM schema_versions WHERE component='audit'").fetchone()
        table = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit'").fetchone()
    except sqlite3.OperationalError:  # no schema_versions table: a state DB nothing was kept in yet
        row = table = None
    except sqlite3.DatabaseError as exc:
        raise NoChain(f"{path}: cannot read the state database: {exc}") from None
    version = int(row[0]) if row else 0
    if version == 0:
        if table is not None:
            raise NoChain(
                f"{path}: the audit table is there but its schema version is not: not written by edge"
            )
        return False
    if version < CHAIN_VERSION or _interrupted(conn):
        raise NotChainedYet(
            f"{path}: the audit log is from before its hash chain: the migration that brings in the "
            "chain chains its entries, once (the first entry this version writes runs it)"
        )
    if version > len(MIGRATIONS):
        raise NoChain(
            f"{path}: audit schema version {version} is newer than this program understands "
            f"({len(MIGRATIONS)}); upgrade community-edge"
        )
    return True


def _rows(conn: sqlite3.Connection) -> Iterator[sqlite3.Row]:
    """Every entry in id order, a page at a time."""
    after = -1
    while True:
        page = conn.execute(
            f"SELECT {_COLUMNS} FROM audit WHERE id > ? ORDER BY id LIMIT 1000", (after,)
        ).fetchall()
        if not page:
            return
        yield from page
        after = page[-1]["id"]


def _span(first: int, last: int) -> str:
    return f"entry #{first} is" if first == last else f"entries #{first}–#{last} ({last - first + 1}) are"


def _check(row: sqlite3.Row, prev_id: int | None, expected_prev: str, first_id: int | None) -> str | None:
    """Why this entry breaks the chain, or None."""
    n = row["id"]
    if row["hash"] is None:
        return f"entry #{n} has no hash: it was written outside the audit log, or its hash was erased"
    if entry_hash(row["prev_hash"] or "", _row_canonical(row)) != row["hash"]:
        return f"entry #{n} was changed after it was written: its content no longer matches its hash"
    if prev_id is None:
        if first_id is not None and n > first_id:
            return f"{_span(first_id, n - 1)} missing from the start of the log (the chain starts at #{first_id})"
        if first_id is not None and n < first_id:
            return f"entry #{n} comes before the chain's first entry #{first_id}: it was added outside the audit log"
        if row["prev_hash"] != expected_prev:
            return f"entry #{n} does not start the chain: its previous hash is not the chain's start"
        return None
    if row["prev_hash"] != expected_prev:
        if n > prev_id + 1:
            return f"{_span(prev_id + 1, n - 1)} missing: deleted from the middle of the log"
        return (
            f"entry #{n} does not follow entry #{prev_id}: #{prev_id}'s hash was rewritten, "
            "or entries were deleted and the rest renumbered"
        )
    return None


def _row_canonical(row: sqlite3.Row) -> bytes:
    return canonical(row["id"], row["ts"], row["actor"], row["action"], row["target"], row["detail"])


def verify(source: StateDB | str | Path) -> Verification:
    """Check every entry's hash and link in id order, then the end against the head record; the
    first break wins. Reads one snapshot, so it may run beside a gateway that is writing; given a
    path (the CLI) it opens the file read-only and changes nothing, migrations included. An open
    StateDB is brought to the newest audit schema first, as any of its users does. Raises NoChain
    when there is no chained log to check."""
    if isinstance(source, StateDB):
        ensure(source)
    with _snapshot(source) as conn:
        if conn is None:  # nothing was ever recorded: an empty log, intact
            return Verification(0, None, GENESIS, None)
        head = conn.execute(
            "SELECT first_id, first_prev, last_id, last_hash, pending FROM audit_head WHERE id=1"
        ).fetchone()
        first_id = head["first_id"] if head else None
        expected_prev = head["first_prev"] if head else GENESIS
        prev_id: int | None = None
        checked = 0
        for row in _rows(conn):
            reason = _check(row, prev_id, expected_prev, first_id)
            if reason is not None:
                return Verification(
                    checked, prev_id, expected_prev, ChainBreak(row["id"], reason, _exported(row))
                )
            checked += 1
            prev_id, expected_prev = row["id"], row["hash"]
    if head is None:
        reason = "the head record (table audit_head) is missing: entries cut from the end cannot be detected"
        return Verification(checked, prev_id, expected_prev, ChainBreak(None, reason))
    if head["pending"]:
        reason = (
            "the head record asks for unhashed entries to be chained (pending): only the migration "
            "that brought in the chain sets it, and it has run: set outside the audit log"
        )
        return Verification(checked, prev_id, expected_prev, ChainBreak(None, reason))
    last_id, last_hash = head["last_id"], head["last_hash"]
    if last_id == prev_id and last_hash == expected_prev:
        return Verification(checked, prev_id, expected_prev, None)
    if prev_id is not None and (last_id is None or last_id < prev_id):
        reason = f"entries after #{last_id} were added without moving the head: written outside the audit log"
        broken = ChainBreak(prev_id, reason)
    elif last_id is not None and (prev_id is None or last_id > prev_id):
        ends = f"ends at entry #{prev_id}" if prev_id is not None else "is empty"
        missing = _span(prev_id + 1 if prev_id is not None else first_id or last_id, last_id)
        broken = ChainBreak(
            last_id,
            f"the log {ends} but its head records #{last_id} as the last: {missing} missing, cut from the end",
        )
    else:
        broken = ChainBreak(
            prev_id, f"entry #{prev_id}'s hash differs from the one the head recorded: it was rewritten"
        )
    return Verification(checked, prev_id, expected_prev, broken)


def export(source: StateDB | str | Path, out: TextIO) -> int:
    """Write every entry as one JSON line, oldest first: id, ts, actor, action, target, detail (or
    detail_raw when the stored detail is not JSON), prev_hash and hash. An entry's hash is
    SHA-256 of `prev_hash + "\\n" +` the line without its two hash fields, encoded as compact JSON
    with sorted keys (ensure_ascii off): the export is checkable without this program. Returns the
    number of entries written. Only reads, as `verify` does (a path: opened read-only); raises
    NoChain when there is no chained log."""
    if isinstance(source, StateDB):
        ensure(source)
    n = 0
    with _snapshot(source) as conn:
        for row in _rows(conn) if conn is not None else ():
            out.write(json.dumps(_exported(row), ensure_ascii=False) + "\n")
            n += 1
    return n
