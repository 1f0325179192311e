"""The journal's row format: how records become SQLite rows and back, and its connections.

`row_to_record` gives the one record shape shared by `edge buffer tail --json` and the pull API.
The reads themselves are named queries in `edge.store.reader`.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Protocol, cast

import orjson

from edge.model import PRIVACY_RANK, QUALITY_NAMES, Event, Reading, Record, event_privacy

BOOL_FLAG = 4  # quality column: bits 0-1 quality, bit 2 "value is a bool" (SQLite has no bool)
SQLITE_FULL = 13

READING_SQL = "INSERT INTO journal(seq, ts, point, value, quality) VALUES (?,?,?,?,?)"
EVENT_SQL = "INSERT INTO journal(seq, ts, point, kind, severity, payload) VALUES (?,?,?,?,?,?)"
CLASSED_EVENT_SQL = (
    "INSERT INTO journal(seq, ts, point, kind, severity, payload, privacy) VALUES (?,?,?,?,?,?,?)"
)
AUTO_READING_SQL = "INSERT INTO journal(ts, point, value, quality) VALUES (?,?,?,?)"
READING_VALUES = "INSERT INTO journal(seq, ts, point, value, quality) VALUES "
AUTO_READING_VALUES = "INSERT INTO journal(ts, point, value, quality) VALUES "
_VALUE = operator.itemgetter(2)
_POINT = operator.itemgetter(1)  # of a Reading
_ROW_POINT = operator.itemgetter(2)  # of an explicit-seq reading row
IN_LIST_MAX = 500  # points per `point IN (...)` when a flush's readings are classed


class RecordClasses(Protocol):
    """Where the writer learns the privacy class of what it stores (the hub, in the runtime):
    `private_ranks` maps each personal or sensitive point to its PRIVACY_RANK (public points are
    absent, so a site without private points pays one empty-dict test per flush); `points` maps
    point ids to PointInfo, for `event_privacy`. Read from the writer thread: the owner replaces
    `private_ranks` instead of changing it in place."""

    @property
    def private_ranks(self) -> Mapping[str, int]: ...

    @property
    def points(self) -> Mapping[str, Any]: ...


SELECT_COLS = "seq, ts, point, value, quality, kind, severity, payload"
# Good (quality & 3 = 0) numeric readings; bools are stored as 0/1 integers (quality bit 2 flags
# them), strings and events are left out: what a trend averages.
READINGS_WHERE = "kind IS NULL AND (quality & 3) = 0 AND typeof(value) IN ('integer', 'real')"


@dataclass(frozen=True)
class EventMatch:
    """Which events a read returns: every field that is set must hold. Callers say what they want
    in these terms; the store turns it into SQL for the table it reads (the journal, whose source
    column is `point`, or the trend index's copy of the events)."""

    kind: str | None = None
    severity: str | None = None
    source: str | None = None
    since: float | None = None  # ts >= since
    before_seq: int | None = None  # seq < before_seq: the next page back

    def where(self, source_col: str) -> tuple[list[str], list[Any]]:
        """(conditions, their arguments) on a table whose event source is `source_col`."""
        conds: list[str] = []
        args: list[Any] = []
        for col, value in (("kind", self.kind), ("severity", self.severity), (source_col, self.source)):
            if value is not None:
                conds.append(f"{col} = ?")
                args.append(value)
        if self.since is not None:
            conds.append("ts >= ?")
            args.append(self.since)
        if self.before_seq is not None:
            conds.append("seq < ?")
            args.append(self.before_seq)
        return conds, args


class JournalClosed(RuntimeError):
    pass


def row_to_record(row: Sequence[Any]) -> dict[str, Any]:
    """A journal row in the shape shared by `edge buffer tail --json` and the pull API."""
    seq, ts, point, value, quality, kind, severity, payload = row
    if kind is None:
        if quality & BOOL_FLAG:
            value = bool(value)
            quality &= 3
        return {
            "seq": seq,
            "ts": ts,
            "type": "reading",
            "point": point,
            "value": value,
            "quality": QUALITY_NAMES[quality],
        }
    return {
        "seq": seq,
        "ts": ts,
        "type": "event",
        "kind": kind,
        "source": point,
        "severity": severity,
        "payload": orjson.loads(payload) if payload else {},
    }


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def is_disk_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(exc)


def build_rows(
    batch: list[Record], seq: int, points: Mapping[str, Any] | None = None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Explicit-seq rows for a mixed batch: readings (bools flagged) and events (payload as JSON,
    their privacy rank last; `points` maps point ids to PointInfo for `event_privacy`)."""
    known: Mapping[str, Any] = points if points is not None else {}
    readings: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    radd = readings.append
    for rec in batch:
        if type(rec) is Reading:
            ts, point, v, q = rec
            if v is True or v is False:
                q |= BOOL_FLAG
            radd((seq, ts, point, v, q))
        else:
            assert isinstance(rec, Event)
            payload = orjson.dumps(rec.payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
            rank = PRIVACY_RANK[event_privacy(rec.kind, rec.payload, known)]
            events.append((seq, rec.ts, rec.source, rec.kind, str(rec.severity), payload, rank))
        seq += 1
    return readings, events


# Rows per INSERT statement: a multi-row VALUES statement binds all its rows, then runs them in
# one sqlite3_step with the GIL released. `executemany` steps (and releases the GIL) once per row:
# it measured 2.5x slower here, and while the event loop is busy every row waits for the GIL.
ROWS_PER_INSERT = 1000
_insert_sql: dict[tuple[str, int], str] = {}


def _values_sql(head: str, ncols: int, nrows: int) -> str:
    sql = _insert_sql.get((head, nrows))
    if sql is None:
        row = "(" + ",".join("?" * ncols) + ")"
        sql = _insert_sql[(head, nrows)] = head + ",".join([row] * nrows)
    return sql


def insert_many(w: sqlite3.Connection, head: str, ncols: int, rows: Sequence[Sequence[Any]]) -> None:
    """Insert `rows` in order with `head` ("INSERT INTO t(cols) VALUES ") in statements of up to
    ROWS_PER_INSERT rows; what is left goes in power-of-two blocks, so at most a dozen statement
    shapes exist (each compiled once, then found in the connection's statement cache)."""
    most = min(ROWS_PER_INSERT, w.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // ncols)
    i, n = 0, len(rows)
    while i < n:
        left = n - i
        size = most if left >= most else 1 << (left.bit_length() - 1)
        w.execute(_values_sql(head, ncols, size), tuple(chain.from_iterable(rows[i : i + size])))
        i += size


def class_readings(w: sqlite3.Connection, points: Iterable[str], seq: int, ranks: Mapping[str, int]) -> None:
    """Set the class of the readings of private points among rows inserted from `seq` on: one
    C-level set of the batch's points, then an UPDATE over the new rows per class present.
    Readings of public points, nearly all of them, stay at the column's default 0."""
    if not ranks:
        return
    hits = set(points).intersection(ranks)
    if not hits:
        return
    by_rank: dict[int, list[str]] = {}
    for point in hits:
        by_rank.setdefault(ranks[point], []).append(point)
    for rank, names in by_rank.items():
        for i in range(0, len(names), IN_LIST_MAX):
            part = names[i : i + IN_LIST_MAX]
            w.execute(
                "UPDATE journal SET privacy = ? WHERE seq >= ? AND kind IS NULL AND point IN "
                f"({','.join('?' * len(part))})",
                (rank, seq, *part),
            )


def insert_records(
    w: sqlite3.Connection, records: list[Record], seq: int, classes: RecordClasses | None = None
) -> None:
    """Insert `records` as seq, seq+1, ... inside the caller's transaction, each with its privacy
    class (`classes`; without it readings are public and events classed by kind and payload).

    The common flush (readings only) binds the readings' fields as they are and lets SQLite number
    them (rowid = max + 1): no per-row Python work beyond C-level maps. The numbering is checked
    before the transaction can commit. Anything else takes the explicit-seq path."""
    if not records:
        return
    end = seq + len(records)
    ranks: Mapping[str, int] = classes.private_ranks if classes is not None else {}
    if set(map(type, records)) == {Reading}:
        rows: list[Any] = records
        if bool in set(map(type, map(_VALUE, rows))):
            rows = [r if r[2].__class__ is not bool else r._replace(quality=r[3] | BOOL_FLAG) for r in rows]
        top = w.execute("SELECT max(seq) FROM journal").fetchone()[0]
        if top != seq - 1:  # rows deleted up to the end (or a gap): pin the first seq explicitly
            w.execute(READING_SQL, (seq, *rows[0]))
            rows = rows[1:]
        insert_many(w, AUTO_READING_VALUES, 4, rows)
        if w.execute("SELECT max(seq) FROM journal").fetchone()[0] != end - 1:
            raise sqlite3.IntegrityError("journal seq numbering diverged; transaction rolled back")
        if ranks:
            class_readings(w, map(_POINT, cast(list[Reading], records)), seq, ranks)
        return
    readings, events = build_rows(records, seq, classes.points if classes is not None else None)
    if readings:
        insert_many(w, READING_VALUES, 5, readings)
        if ranks:
            class_readings(w, map(_ROW_POINT, readings), seq, ranks)
    if events:
        w.executemany(CLASSED_EVENT_SQL, events)
