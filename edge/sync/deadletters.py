"""The sync tables in the state DB: dead letters (records a receiver rejected as bad content) and
the last status snapshot of each sink (read by `edge sync status` while the gateway runs).

Each dead letter keeps its record's privacy class; personal and sensitive ones are deleted once
dead-lettered longer ago than their class's retention (`expire`, run by the journal's retention
passes), public ones stay until an operator deals with them (retries or deletes them), or, once
their sink is no longer in the site file, until the public class's retention.

Every statement against these tables is here: the routes (`edge.sync.api`), the sinks and the CLI
call these functions."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from edge.model import PRIVACY_RANK, Privacy
from edge.state import StateDB
from edge.store.reader import Row
from edge.store.rows import sealer_for

if TYPE_CHECKING:
    from edge.config import Site

MIGRATIONS = [
    """
    CREATE TABLE sync_dead_letters (
        id INTEGER PRIMARY KEY,
        sink TEXT NOT NULL,
        seq INTEGER NOT NULL,
        record TEXT NOT NULL,         -- the record as JSON (pull-API shape)
        status INTEGER,               -- the HTTP status that rejected it
        response TEXT NOT NULL,       -- the start of the response body
        ts REAL NOT NULL,
        retried REAL                  -- when a manual retry delivered it
    );
    CREATE INDEX sync_dead_letters_sink ON sync_dead_letters(sink, id);
    CREATE TABLE sync_status (sink TEXT PRIMARY KEY, status TEXT NOT NULL, updated REAL NOT NULL);
    """,
    # each dead letter's privacy class (PRIVACY_RANK: 0 public, 1 personal, 2 sensitive), so it
    # expires at its class's retention; NULL on the rows of before, classified by the next pass
    """
    ALTER TABLE sync_dead_letters ADD COLUMN privacy INTEGER;
    CREATE INDEX sync_dead_letters_privacy ON sync_dead_letters(privacy, ts);
    """,
]

#: rows deleted (or classified) in one statement: the state lock is held only that long
CHUNK = 1000
#: chunks one expiry pass deletes at most; the rest go at the next pass
MAX_CHUNKS = 20
SENSITIVE = PRIVACY_RANK[Privacy.SENSITIVE]
CLASS_NAMES = {rank: str(cls) for cls, rank in PRIVACY_RANK.items()}  # as the listing shows them


COMPONENT = "sync"  # the tables' owner in the state DB's migrations


def ensure(state: StateDB) -> None:
    state.migrate(COMPONENT, MIGRATIONS)


def created(state: StateDB) -> bool:
    """The tables exist: a site that never ran a sink has none (and listing them is not an error)."""
    return state.version(COMPONENT) > 0


@dataclass(frozen=True)
class DeadLetter:
    """One stored dead letter, as a manual retry needs it."""

    id: int
    sink: str
    record: dict[str, Any]  # the pull-API shape
    retried: float | None  # when a manual retry delivered it, None while pending


def listing(state: StateDB, sink: str | None, before: int | None, limit: int) -> list[dict[str, Any]]:
    """The newest dead letters first (of `sink` only when given; ids below `before` when given),
    at most `limit`, in the shape of `GET /api/v1/sync/dead-letters`."""
    if not created(state):
        return []
    sql = "SELECT id, sink, seq, record, status, response, ts, retried, privacy FROM sync_dead_letters WHERE 1=1"
    args: list[Any] = []
    if sink:
        sql += " AND sink=?"
        args.append(sink)
    if before:
        sql += " AND id<?"
        args.append(before)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    with state.lock:
        rows = state.conn.execute(sql, args).fetchall()
    # the state DB's rows are sqlite3.Row: keyed by the SELECT's column names, in its order
    return [
        {
            **dict(r),
            "record": _record(state, r["record"], r["sink"], r["seq"]),
            "privacy": CLASS_NAMES.get(r["privacy"]),
        }
        for r in rows
    ]


def of_subject(site: Site, state: StateDB, subject: str) -> Iterator[dict[str, Any]]:
    """The dead letters whose record names `subject`, oldest first, for its export: `{"type":
    "dead_letter", "id", "sink", "dead_lettered", "status", "privacy", "record"}`. A dead letter
    keeps its record as it was to be sent: it names the subject by its reference (a field the
    sink sends in clear) or by the sink's pseudonym of it, or not at all (withheld); an event
    sealed under the subject's key is theirs though it names them nowhere (a rule's alert their
    measurement fired). Sealed ones open where this process holds the keys; a forgotten subject's do not."""
    from edge.privacy.subjects import names_by_sink, private_points, record_names_subject

    if not created(state):
        return
    names = names_by_sink(site, subject)
    kid = _subject_kid(state, subject)
    # an alert on a gate's plate point names the plate by its value, as the journal's copy does
    private = private_points(site)
    after = 0
    while True:
        with state.lock:  # a page at a time: the lock is not held while the caller writes
            rows = state.conn.execute(
                "SELECT id, sink, seq, record, status, ts, privacy FROM sync_dead_letters "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (after, CHUNK),
            ).fetchall()
        if not rows:
            return
        after = rows[-1]["id"]
        for r in rows:
            record = _record(state, r["record"], r["sink"], r["seq"])
            # an event sealed under the subject's key is theirs though it names no one (a rule's
            # alert their measurement fired), as the journal's copy is; a reading names its
            # subject by its value, which a sink without a pseudonym key was sent withheld
            keyed = (
                isinstance(record, dict) and record.get("type") == "event" and _sealed_under(r["record"], kid)
            )
            if keyed or any(
                record_names_subject(record, name, private) for name in names.get(r["sink"], (subject,))
            ):
                yield {
                    "type": "dead_letter",
                    "id": r["id"],
                    "sink": r["sink"],
                    "dead_lettered": r["ts"],
                    "status": r["status"],
                    "privacy": CLASS_NAMES.get(r["privacy"]),
                    "record": record,
                }


def _subject_kid(state: StateDB, subject: str) -> bytes | None:
    """The reference of `subject`'s data key where this process seals the state DB, else None."""
    sealer = sealer_for(state.path)
    if sealer is None:
        return None
    from edge.privacy.atrest import Sealer

    return sealer.keys.kid_of(subject) if isinstance(sealer, Sealer) else None


def _sealed_under(stored: Any, kid: bytes | None) -> bool:
    """A stored record is sealed under the key `kid`."""
    if kid is None or type(stored) is not bytes:
        return False
    from edge.privacy.keys import envelope_kid

    return envelope_kid(stored) == kid


def _where(sink: str, seq: int) -> str:
    """What a sealed dead letter is bound to: it opens only as this sink's record `seq`."""
    return f"dead letter\x00{sink}\x00{int(seq)}"


def _record(state: StateDB, stored: str | bytes, sink: str, seq: int) -> Any:
    """A stored record: personal and sensitive ones are sealed (opened where the gateway holds the
    keys)."""
    if type(stored) is not bytes:  # stored in clear: a site without privacy never loads its code
        return orjson.loads(stored)
    from edge.privacy.atrest import open_record

    return open_record(state.path, stored, _where(sink, seq))


def one(state: StateDB, dead_letter_id: int) -> DeadLetter | None:
    """The dead letter `dead_letter_id`, None when there is no such one."""
    if not created(state):
        return None
    with state.lock:
        row = state.conn.execute(
            "SELECT sink, record, retried, seq FROM sync_dead_letters WHERE id=?", (dead_letter_id,)
        ).fetchone()
    if row is None:
        return None
    return DeadLetter(dead_letter_id, row[0], _record(state, row[1], row[0], row[3]), row[2])


def mark_retried(state: StateDB, dead_letter_id: int) -> None:
    """A manual retry delivered it: it no longer counts as pending."""
    with state.lock:
        state.conn.execute("UPDATE sync_dead_letters SET retried=? WHERE id=?", (time.time(), dead_letter_id))


def add(
    state: StateDB,
    sink: str,
    seq: int,
    record: dict[str, Any],
    status: int | None,
    response: str,
    privacy: int | None = None,
    about: dict[str, Any] | None = None,
) -> None:
    """Store a record `sink` could not deliver (as it was sent: the sink's pseudonyms, withheld
    fields). `privacy`: its class's rank (`PRIVACY_RANK`), by which it expires; None leaves it to
    the next expiry pass (a sealed record is then sensitive). `about`: the record as the journal
    holds it, when it differs: sealed, the dead letter goes under the key of the resident or plate
    that one names, or, when it names none, under the key the journal's row `seq` is sealed under
    (a rule's alert on a resident's measurement), so a forget shreds it with their other records."""
    stored: str | bytes = orjson.dumps(record).decode()
    sealer = sealer_for(state.path)
    if sealer is not None:  # this process seals: the privacy component has loaded its code
        from edge.privacy.atrest import Sealer

        if isinstance(sealer, Sealer) and ((privacy or 0) >= 1 or sealer.is_private(record)):
            # sealed under the key of the journal's row when no field names its subject (a rule's
            # alert about the resident whose measurement fired it), so a forget shreds it too; a
            # receiver's answer may quote what it rejected, so a private record's is not kept
            stored, response = sealer.seal_record(record, _where(sink, seq), about, journal_seq=seq), ""
            if not privacy:  # private by the sealer's classes: the strictest of the private ones
                privacy = SENSITIVE
    with state.lock:
        state.conn.execute(
            "INSERT INTO sync_dead_letters(sink, seq, record, status, response, ts, privacy) "
            "VALUES (?,?,?,?,?,?,?)",
            (sink, seq, stored, status, response[:2000], time.time(), privacy),
        )


def pending(state: StateDB, sink: str) -> int:
    """Dead letters of `sink` not yet delivered by a manual retry."""
    with state.lock:
        row = state.conn.execute(
            "SELECT count(*) FROM sync_dead_letters WHERE sink=? AND retried IS NULL", (sink,)
        ).fetchone()
    return int(row[0])


def held_by_sinks(state: StateDB, but: set[str]) -> dict[str, int]:
    """The dead letters held per sink, for the sinks with any except those in `but` (the site
    file's: the status counts theirs): the sinks no longer configured (removed or renamed). The
    sinks are found by seeks on the (sink, id) index, one per sink, and only those outside `but`
    are counted, on that index alone: the cost is their own letters, not the table's."""
    if not created(state):
        return {}
    with state.lock:
        sinks = [
            str(r[0])
            for r in state.conn.execute(
                "WITH RECURSIVE s(sink) AS (SELECT min(sink) FROM sync_dead_letters UNION ALL "
                "SELECT (SELECT min(sink) FROM sync_dead_letters WHERE sink > s.sink) FROM s "
                "WHERE s.sink IS NOT NULL) SELECT sink FROM s WHERE sink IS NOT NULL"
            )
        ]
        return {
            sink: int(
                state.conn.execute("SELECT count(*) FROM sync_dead_letters WHERE sink=?", (sink,)).fetchone()[
                    0
                ]
            )
            for sink in sinks
            if sink not in but
        }


def delete(state: StateDB, dead_letter_id: int) -> bool:
    """Delete one dead letter; False when there is no such one."""
    if not created(state):
        return False
    with state.lock:
        return state.conn.execute("DELETE FROM sync_dead_letters WHERE id=?", (dead_letter_id,)).rowcount > 0


def saved_status(state: StateDB, sink: str) -> dict[str, Any]:
    """The last status snapshot `sink` saved ({} when none)."""
    if not created(state):
        return {}
    with state.lock:
        row = state.conn.execute("SELECT status FROM sync_status WHERE sink=?", (sink,)).fetchone()
    saved = orjson.loads(row[0]) if row is not None else {}
    return saved if isinstance(saved, dict) else {}


def save_status(state: StateDB, sink: str, status: dict[str, Any]) -> None:
    with state.lock:
        state.conn.execute(
            "INSERT INTO sync_status(sink, status, updated) VALUES (?,?,?) "
            "ON CONFLICT(sink) DO UPDATE SET status=excluded.status, updated=excluded.updated",
            (sink, orjson.dumps(status).decode(), time.time()),
        )


# ---------------------------------------------------------------- retention


def _row_of(record: Any) -> Row:
    """The journal-row columns a record's class depends on (point or source, kind, payload), from
    its pull-API shape: for `RecordFilter.rank`."""
    if not isinstance(record, dict):
        raise ValueError("not a record")
    if record.get("type") == "event":
        payload = record.get("payload")
        text = orjson.dumps(payload).decode() if payload is not None else None
        return (None, None, record.get("source"), None, None, record.get("kind") or "", None, text)
    return (None, None, record.get("point"), None, None, None, None, None)


def classify(state: StateDB, rank_of: Callable[[Row], int]) -> int:
    """Give the dead letters stored without a class (privacy NULL: those of before the column) one,
    each once: a sealed record is private, taken as sensitive (the strictest); a clear one the rank
    `rank_of` gives its row (a record that cannot be read is taken as sensitive too). Returns how
    many were classified. Finding none is one look-up in the (privacy, ts) index."""
    if not created(state):
        return 0
    done = 0
    while True:
        with state.lock:
            rows = state.conn.execute(
                "SELECT id, record FROM sync_dead_letters WHERE privacy IS NULL LIMIT ?", (CHUNK,)
            ).fetchall()
            if not rows:
                return done
            ranks = []
            for dead_letter_id, stored in rows:
                if type(stored) is bytes:
                    rank = SENSITIVE
                else:
                    try:
                        rank = rank_of(_row_of(orjson.loads(stored)))
                    except (ValueError, TypeError, KeyError):
                        rank = SENSITIVE
                ranks.append((rank, dead_letter_id))
            state.conn.execute("BEGIN IMMEDIATE")
            try:
                state.conn.executemany("UPDATE sync_dead_letters SET privacy=? WHERE id=?", ranks)
                state.conn.execute("COMMIT")
            except BaseException:
                if state.conn.in_transaction:  # a failed COMMIT has rolled back already
                    state.conn.execute("ROLLBACK")
                raise
        done += len(rows)


def expire(
    state: StateDB,
    now: float,
    retention_s: Mapping[int, float | None],
    configured: Collection[str] | None = None,
) -> dict[int, Counter[str]]:
    """Delete the personal and sensitive dead letters dead-lettered longer ago than their class's
    retention (`retention_s`: seconds by rank, None: kept) by the wall time `now`, in chunks of
    CHUNK rows, at most MAX_CHUNKS a call. Public ones of a configured sink are not expired by
    age (an operator retries them); those of a sink not among `configured` (removed or renamed in
    the site file: nothing can retry them) expire at the public class's retention
    (`storage.keep_history`) too. Returns, per rank with some deleted, how many of each sink's."""
    gone: dict[int, Counter[str]] = {}
    if not created(state):
        return gone
    chunks = 0
    for rank, keep in sorted(retention_s.items(), reverse=True):
        if keep is None or (rank < 1 and configured is None):
            continue
        sql = (
            "DELETE FROM sync_dead_letters WHERE id IN (SELECT id FROM sync_dead_letters "
            "WHERE privacy=? AND ts<?{} LIMIT ?) RETURNING sink"
        )
        args: list[Any] = [rank, now - keep]
        if rank < 1:  # public: a removed sink's only
            assert configured is not None
            sql = sql.format(f" AND sink NOT IN ({','.join('?' * len(configured))})" if configured else "")
            args += list(configured)
        else:
            sql = sql.format("")
        while chunks < MAX_CHUNKS:
            chunks += 1
            with state.lock:
                sinks = state.conn.execute(sql, (*args, CHUNK)).fetchall()
            if sinks:
                gone.setdefault(rank, Counter()).update(s for (s,) in sinks)
            if len(sinks) < CHUNK:
                break
    return gone
