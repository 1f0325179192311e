"""The journal's row format: how records become SQLite rows and back, and its connections.

`row_to_record` gives the one record shape shared by `edge buffer tail --json` and the pull API.
The reads themselves are named queries in `edge.store.reader`.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat
from typing import Any, Protocol, cast

import orjson

from edge import paths
from edge.model import (
    PRIVACY_RANK,
    QUALITY_NAMES,
    Event,
    Privacy,
    Quality,
    Reading,
    Record,
    event_privacy,
)

log = logging.getLogger(__name__)

BOOL_FLAG = 4  # quality column: bits 0-1 quality, bit 2 "value is a bool" (SQLite has no bool)
# quality column, bit 3: journaled while the clock was not trusted (`edge.clock.ClockTrust`); set on
# events too, whose quality is otherwise NULL. Decoded as `"clock_untrusted": true`.
CLOCK_FLAG = 8
SQLITE_FULL = 13
CHECKPOINT_BUSY_MS = 200  # a checkpoint waits this long for readers, never a connection's 30 s

READING_SQL = "INSERT INTO journal(seq, ts, point, value, quality) VALUES (?,?,?,?,?)"
FLAGGED_READING_SQL = "INSERT INTO journal(seq, ts, point, value, quality) VALUES (?,?,?,?,?|8)"
EVENT_SQL = "INSERT INTO journal(seq, ts, point, kind, severity, payload) VALUES (?,?,?,?,?,?)"
AUTO_READING_SQL = "INSERT INTO journal(ts, point, value, quality) VALUES (?,?,?,?)"
# the multi-row head of the journal's own inserts (`_values_sql` builds its rows; a flush
# journaled while the clock is untrusted gets `?|8` for its quality: SQLite sets the flag)
AUTO_READING_VALUES = "INSERT INTO journal(ts, point, value, quality) VALUES "
_VALUE = operator.itemgetter(2)
_POINT = operator.itemgetter(1)  # of a Reading
# the readings of a flush's private points get their class: the names as one JSON parameter, so
# the statement has one shape whatever their number (each shape a connection runs stays compiled)
CLASS_READINGS_SQL = (
    "UPDATE journal SET privacy = ? WHERE seq >= ? AND kind IS NULL "
    "AND point IN (SELECT value FROM json_each(?))"
)
SENSITIVE = PRIVACY_RANK[Privacy.SENSITIVE]
PERSONAL = PRIVACY_RANK[Privacy.PERSONAL]

# An integer SQLite cannot hold (beyond its signed 64 bits: a Modbus uint64 of 0xFFFF..., a sim
# constant of 1e20) is journaled as the nearest float (one beyond even a float's range as a bad
# reading), and so is a payload's integer beyond orjson's 64 bits, signed or unsigned (beyond a
# float's range: its decimal text). Found only when a statement fails to bind (OverflowError) or a payload fails to
# serialise (TypeError): the hot path pays nothing. Counted in the journal's `counters` table, in
# the transaction that stores them, and said in the log once per point or source.
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
JSON_INT_MAX = (1 << 64) - 1  # orjson writes integers up to uint64
INTS_AS_FLOATS = "ints_as_floats"
#: add to a persisted counter, created on first use (the journal's `counters` table)
ADD_COUNTER_SQL = (
    "INSERT INTO counters(name, value) VALUES(?, ?) "
    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"
)
_told_fitted: set[str] = set()  # the points and sources already named in the log


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


class Sealer(Protocol):
    """What seals sensitive values before they are written and opens them where rows are read
    (`edge.privacy.atrest.Sealer`). `open_text` raises LookupError when the value's subject was
    forgotten (it reads as erased), ValueError when it does not open here (it reads as sealed)."""

    sealed: int

    def seal_payload(self, payload: dict[str, Any], text: str, ts: float, source: str) -> bytes: ...

    def seal_value(self, value: Any, ts: float, source: str) -> bytes: ...

    def open_text(self, envelope: bytes, column: str, ts: float, source: str) -> str: ...

    def close(self) -> None: ...


ERASED_PAYLOAD = '{"erased":true}'  # what a forgotten subject's sealed payload reads as
SEALED_PAYLOAD = '{"sealed":true}'  # ...and one this process holds no key for
SEALED_COLUMNS = ("payload", "value", "record")
_SOURCE_COLUMNS = ("point", "source")
_sealers: dict[str, Sealer] = {}
_sealers_lock = threading.Lock()


def _norm(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


def register(path: str | os.PathLike[str], sealer: Sealer) -> None:
    """Rows fetched from the SQLite file `path` in this process are opened with `sealer`."""
    with _sealers_lock:
        _sealers[_norm(path)] = sealer


def unregister(path: str | os.PathLike[str], sealer: Sealer | None = None) -> None:
    with _sealers_lock:
        key = _norm(path)
        if sealer is None or _sealers.get(key) is sealer:
            _sealers.pop(key, None)


def sealer_for(path: str | os.PathLike[str]) -> Sealer | None:
    if not _sealers:
        return None
    return _sealers.get(_norm(path))


def sealed_columns(description: Sequence[Sequence[Any]] | None) -> tuple[list[int], int, int]:
    """(indexes of the columns that may hold an envelope, index of ts, index of the point or
    source; -1 when absent) of a query's columns."""
    if not description:
        return [], -1, -1
    names = [d[0] for d in description]
    cols = [i for i, n in enumerate(names) if n in SEALED_COLUMNS]
    ts = names.index("ts") if "ts" in names else -1
    src = next((names.index(n) for n in _SOURCE_COLUMNS if n in names), -1)
    return cols, ts, src


def open_rows(path: str, description: Sequence[Sequence[Any]] | None, rows: list[Any]) -> list[Any]:
    """`rows` with every envelope among their sealed columns opened (bytes are never a stored
    value otherwise). Costs one C-level type scan per sealed column when nothing is sealed."""
    if not rows:
        return rows
    cols, ts_i, src_i = sealed_columns(description)
    hit = [i for i in cols if bytes in set(map(type, map(operator.itemgetter(i), rows)))]
    if not hit:
        return rows
    sealer = sealer_for(path)
    names = [d[0] for d in description or ()]
    out = []
    for row in rows:
        if not any(type(row[i]) is bytes for i in hit):
            out.append(row)
            continue
        items = list(row)
        for i in hit:
            if type(items[i]) is bytes:
                items[i] = _open_one(sealer, items[i], names[i], row, ts_i, src_i)
        out.append(tuple(items))
    return out


def _open_one(sealer: Sealer | None, envelope: bytes, column: str, row: Any, ts_i: int, src_i: int) -> Any:
    reading = column == "value"
    if sealer is None or ts_i < 0 or src_i < 0:
        return None if reading else SEALED_PAYLOAD
    try:
        text = sealer.open_text(envelope, column, row[ts_i], row[src_i])
    except LookupError:  # the subject was forgotten: erased, not an error
        return None if reading else ERASED_PAYLOAD
    except ValueError:  # altered, or another site's keys
        return None if reading else SEALED_PAYLOAD
    return orjson.loads(text) if reading else text


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
        flags = 0
        if quality > 3:
            flags, quality = quality, quality & 3
            if flags & BOOL_FLAG:
                value = bool(value)
        rec = {
            "seq": seq,
            "ts": ts,
            "type": "reading",
            "point": point,
            "value": value,
            "quality": QUALITY_NAMES[quality],
        }
        if flags & CLOCK_FLAG:
            rec["clock_untrusted"] = True
        return rec
    rec = {
        "seq": seq,
        "ts": ts,
        "type": "event",
        "kind": kind,
        "source": point,
        "severity": severity,
        "payload": orjson.loads(payload) if payload else {},
    }
    if quality:  # NULL for an event unless the clock flag is set
        rec["clock_untrusted"] = True
    return rec


class OpeningCursor(sqlite3.Cursor):
    """Fetches open sealed values (`edge.privacy.atrest.open_rows`), so every reader of the
    journal sees a sensitive record as it came, or as erased, without code of its own."""

    def fetchall(self) -> list[Any]:
        return open_rows(self.connection.path, self.description, super().fetchall())  # type: ignore[attr-defined]

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        rows = super().fetchmany(self.arraysize if size is None else size)
        return open_rows(self.connection.path, self.description, rows)  # type: ignore[attr-defined]

    def fetchone(self) -> Any:
        row = super().fetchone()
        if row is None:
            return None
        return open_rows(self.connection.path, self.description, [row])[0]  # type: ignore[attr-defined]


class JournalConnection(sqlite3.Connection):
    """A connection to one journal file whose cursors open sealed values."""

    path = ""

    def cursor(self, factory: Any = OpeningCursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:  # type: ignore[override]
        # sqlite3's own execute makes a plain cursor, not this connection's
        return super().cursor(OpeningCursor).execute(sql, parameters)


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            paths.sqlite_uri(path), uri=True, check_same_thread=False, timeout=30, factory=JournalConnection
        )
    else:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30, factory=JournalConnection
        )
    conn.path = path
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def checkpoint(conn: sqlite3.Connection, schema: str = "main") -> bool:
    """Copy the WAL of `schema` (the journal's file; an attached one, such as the trend index's)
    into its file and truncate it, waiting CHECKPOINT_BUSY_MS for readers, never the
    connection's 30 s; False when a reader's snapshot kept it from finishing or it failed (try
    again later: the frames a reader may still read stay)."""
    try:
        conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
        busy = conn.execute(f"PRAGMA {schema}.wal_checkpoint(TRUNCATE)").fetchone()[0]
    except sqlite3.Error as exc:
        log.debug("checkpoint of %s (%s) failed: %s", schema, getattr(conn, "path", ""), exc)
        return False
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA busy_timeout=30000")
    return not busy


def is_disk_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(exc)


def event_row(
    rec: Event, points: Mapping[str, Any], sealer: Sealer | None, fitted: list[tuple[str, Any]] | None = None
) -> tuple[str, str, Any, int]:
    """(kind, severity, payload, privacy rank) of an event's row: the payload as JSON, sealed
    when the event is personal or sensitive and a `sealer` is given. An integer beyond 64 bits
    in the payload is written as `fit_payload` makes it (and added to `fitted`)."""
    payload = rec.payload
    try:
        text = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError as exc:
        found: list[tuple[str, Any]] = []
        try:
            payload = fit_payload(payload, found, rec.source)
        except RecursionError:  # nested beyond Python's own depth: orjson's refusal is the error
            raise exc from None
        if not found:  # not an integer's fault
            raise
        text = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        if fitted is not None:
            fitted.extend(found)
    rank = PRIVACY_RANK[event_privacy(rec.kind, payload, points)]
    if rank >= PERSONAL and sealer is not None:
        return rec.kind, str(rec.severity), sealer.seal_payload(payload, text, rec.ts, rec.source), rank
    return rec.kind, str(rec.severity), text, rank


# Rows per INSERT statement: a multi-row VALUES statement binds all its rows, then runs them in
# one sqlite3_step with the GIL released. `executemany` steps (and releases the GIL) once per row:
# it measured 2.5x slower here, and while the event loop is busy every row waits for the GIL.
ROWS_PER_INSERT = 1000
_insert_sql: dict[tuple[str, int, bool], str] = {}  # (head, rows, flagged)


def _values_sql(head: str, ncols: int, nrows: int, flagged: bool = False) -> str:
    key = (head, nrows, flagged)
    sql = _insert_sql.get(key)
    if sql is None:
        # the last column is the quality: `?|8` sets the clock flag as SQLite inserts the row
        row = "(" + ",".join("?" * ncols) + ("|8)" if flagged else ")")
        sql = _insert_sql[key] = head + ",".join([row] * nrows)
    return sql


def _blocks(n: int, most: int) -> Iterator[tuple[int, int]]:
    """(start, size) of `most` items each, then power-of-two blocks for what is left."""
    i = 0
    while i < n:
        left = n - i
        size = most if left >= most else 1 << (left.bit_length() - 1)
        yield i, size
        i += size


def insert_many(
    w: sqlite3.Connection,
    head: str,
    ncols: int,
    rows: Sequence[Sequence[Any]],
    flagged: bool = False,
    fit: Callable[[Sequence[Sequence[Any]]], Sequence[Sequence[Any]]] | None = None,
) -> int:
    """Insert `rows` in order with `head` ("INSERT INTO t(cols) VALUES ") in statements of up to
    ROWS_PER_INSERT rows; what is left goes in power-of-two blocks, so at most a dozen statement
    shapes exist (each compiled once, then found in the connection's statement cache).
    `flagged`: the last column (a reading's quality) gets CLOCK_FLAG. `fit`: what a statement's
    rows become when one of their integers is beyond SQLite's (the statement then runs once more
    with them); without it the OverflowError is raised. Returns the rowid of the last row
    inserted (0 when none)."""
    most = min(ROWS_PER_INSERT, w.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // ncols)
    last = 0
    for i, size in _blocks(len(rows), most):
        sql = _values_sql(head, ncols, size, flagged)
        block = rows[i : i + size]
        try:
            last = w.execute(sql, tuple(chain.from_iterable(block))).lastrowid or 0
        except OverflowError:  # raised while binding: the statement inserted nothing
            if fit is None:
                raise
            last = w.execute(sql, tuple(chain.from_iterable(fit(block)))).lastrowid or 0
    return last


def insert_readings(
    w: sqlite3.Connection,
    rows: Sequence[Sequence[Any]],
    seq: int,
    flagged: bool = False,
    fitted: list[tuple[str, Any]] | None = None,
) -> int:
    """The journal's own statements for (ts, point, value, quality) rows numbered seq, seq+1, ...:
    the first row alone with its seq bound (whatever was deleted before it), then the others in
    `insert_many`'s statements, SQLite numbering them as it appends them (max + 1). Returns the
    last rowid inserted: seq + len(rows) - 1 unless a row above seq was there (the numbering
    check).

    The first row goes in a statement of its own so that every multi-row statement has one head:
    SQLite keeps each statement shape the connection has run compiled in its statement cache for
    good, and a 1,000-row INSERT holds 551 kB of SQLite's memory (512 rows: 268 kB). With the
    seq-bound first row inside the multi-row statements, each size existed twice, and the
    gateway's memory grew by another 1.1 MB as flushes of new sizes came (a burst, a backlog).

    A value SQLite cannot hold as an integer goes in as `fit_readings` makes it; its (point, value)
    is added to `fitted`."""
    if not rows:
        return 0
    into = fitted if fitted is not None else []

    def fit(block: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        return fit_readings(block, into)

    sql = FLAGGED_READING_SQL if flagged else READING_SQL
    try:
        last = w.execute(sql, (seq, *rows[0])).lastrowid or 0
    except OverflowError:
        last = w.execute(sql, (seq, *fit(rows[:1])[0])).lastrowid or 0
    if len(rows) > 1:
        last = insert_many(w, AUTO_READING_VALUES, 4, rows[1:], flagged, fit)
    return last


def fit_readings(rows: Sequence[Sequence[Any]], fitted: list[tuple[str, Any]]) -> list[Sequence[Any]]:
    """(ts, point, value, quality) `rows` with each integer value beyond SQLite's signed 64 bits
    as the nearest float, or, beyond a float's range, as no value of quality bad; the (point,
    value) of each is added to `fitted`. Runs only for a statement that failed to bind."""
    out: list[Sequence[Any]] = []
    for row in rows:
        value = row[2]
        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            fitted.append((row[1], value))
            try:
                row = (row[0], row[1], float(value), row[3])
            except OverflowError:  # beyond ±1.8e308: no number the journal can hold
                row = (row[0], row[1], None, (row[3] & ~3) | int(Quality.BAD))
        out.append(row)
    return out


def fit_payload(payload: Any, fitted: list[tuple[str, Any]], source: str) -> Any:
    """`payload` with each integer beyond 64 bits (below -2**63, above 2**64-1: what orjson
    refuses) replaced by the nearest float, or by its decimal text beyond a float's range; the
    (source, value) of each is added to `fitted`. Dicts, lists and tuples are walked."""
    if type(payload) is int:
        if INT64_MIN <= payload <= JSON_INT_MAX:
            return payload
        fitted.append((source, payload))
        try:
            return float(payload)
        except OverflowError:
            return str(payload)
    if isinstance(payload, dict):
        return {k: fit_payload(v, fitted, source) for k, v in payload.items()}
    if isinstance(payload, list | tuple):
        return [fit_payload(v, fitted, source) for v in payload]
    return payload


def count_fitted(w: sqlite3.Connection, fitted: Sequence[tuple[str, Any]]) -> None:
    """Count the integers journaled as floats (`INTS_AS_FLOATS`, a persisted counter created on
    first use) in the caller's transaction, so a rolled-back commit counts nothing; say so in the
    log the first time a point or source has one, naming the point or source, never the value
    (a personal or sensitive reading's is sealed at rest, and the log is not)."""
    w.execute(ADD_COUNTER_SQL, (INTS_AS_FLOATS, len(fitted)))
    for where, _ in fitted:
        if where not in _told_fitted:
            _told_fitted.add(where)
            log.warning(
                "%s: an integer outside the journal's 64-bit integers (-2**63 to 2**63-1) was "
                "journaled as the nearest float (counted in %s; said once per point or source)",
                where,
                INTS_AS_FLOATS,
            )


def class_readings(
    w: sqlite3.Connection, points: Iterable[str], seq: int, ranks: Mapping[str, int]
) -> set[int]:
    """Set the class of the readings of private points among rows inserted from `seq` on: one
    C-level set of the batch's points, then an UPDATE over the new rows per class present.
    Readings of public points, nearly all of them, stay at the column's default 0. Returns the
    classes it set."""
    if not ranks:
        return set()
    hits = set(points).intersection(ranks)
    if not hits:
        return set()
    by_rank: dict[int, list[str]] = {}
    for point in hits:
        by_rank.setdefault(ranks[point], []).append(point)
    for rank, names in by_rank.items():
        w.execute(CLASS_READINGS_SQL, (rank, seq, orjson.dumps(names).decode()))
    return set(by_rank)


def seal_readings(
    records: list[Any], ranks: Mapping[str, int], sealer: Sealer, fitted: list[tuple[str, Any]] | None = None
) -> list[Any]:
    """`records` with the value of each reading that is sealed at rest sealed: every value of a
    sensitive point, the string values of a personal point (a gate's `last_plate`; a personal
    point's numbers identify nobody and keep their trend). Bools keep their flag in the quality
    column, so the value opens to what it was; an integer beyond 64 bits is sealed as
    `fit_payload` makes it (and added to `fitted`)."""
    out = []
    for r in records:
        if type(r) is Reading:
            rank = ranks.get(r.point, 0)
            if rank == SENSITIVE or (rank and type(r.value) is str):
                q = r.quality | BOOL_FLAG if r.value is True or r.value is False else r.quality
                value = r.value
                if type(value) is int and not INT64_MIN <= value <= JSON_INT_MAX:
                    value = fit_payload(value, fitted if fitted is not None else [], r.point)
                r = Reading(r.ts, r.point, cast(Any, sealer.seal_value(value, r.ts, r.point)), q)
        out.append(r)
    return out


def insert_records(
    w: sqlite3.Connection,
    records: list[Record],
    seq: int,
    classes: RecordClasses | None = None,
    sealer: Sealer | None = None,
    untrusted: bool = False,
    converted: list[tuple[str, Any]] | None = None,
) -> set[int]:
    """Insert `records` as seq, seq+1, ... inside the caller's transaction, each with its privacy
    class (`classes`; without it readings are public and events classed by kind and payload).
    With a `sealer`, personal and sensitive payloads and the values of private points are sealed
    first (`seal_readings`). `untrusted`: every row gets CLOCK_FLAG (the clock was not trusted).
    Returns the privacy classes above public among the rows; the (point or source, value) of each
    integer journaled as a float is added to `converted`, so the caller can count them in memory
    once the transaction commits (`count_fitted` counts them in the file, inside it).

    Every record goes in with the readings' statements (`insert_readings`: SQLite numbers the rows
    as it appends them; the fields bound as they are, no per-row Python work beyond C-level maps);
    an event goes in as a row of its time and source, whose event columns an UPDATE by rowid fills
    in after. A flush with 1 % events runs as few INSERT statements as one without; the events are
    in the seq order they were appended in. The numbering is checked before the
    transaction can commit. An integer beyond 64 bits (a reading's value, inside a payload) is
    journaled as the nearest float and counted (`count_fitted`), never left to fail the commit."""
    if not records:
        return set()
    end = seq + len(records)
    fitted: list[tuple[str, Any]] = []  # integers beyond 64 bits, journaled as floats
    ranks: Mapping[str, int] = classes.private_ranks if classes is not None else {}
    try:  # one C-level pass: the value types, or a TypeError at an event (it has no item 2)
        values = set(map(type, map(_VALUE, cast(list[Reading], records))))
        only = True
    except TypeError:
        only = False
    if sealer is not None and ranks:
        readings = cast(list[Reading], records) if only else [r for r in records if type(r) is Reading]
        hits = ranks.keys() & set(map(_POINT, readings))
        # a flush whose private readings are a personal point's numbers (nothing to seal) pays two
        # C-level scans, not a Python loop over every record
        if hits and (
            SENSITIVE in map(ranks.__getitem__, hits) or str in set(map(type, map(_VALUE, readings)))
        ):
            records = seal_readings(records, ranks, sealer, fitted)
    rows: list[Any] = records
    events: list[tuple[Any, ...]] = []
    if not only:
        known = classes.points if classes is not None else None
        # an event's quality is NULL, or CLOCK_FLAG alone: 0 becomes 8 under the flagged `?|8`
        rows, events = _event_rows(records, seq, known, sealer, 0 if untrusted else None, fitted)
        values = set(map(type, map(_VALUE, rows)))
    if bool in values:
        rows = [r if r[2].__class__ is not bool else (*r[:3], r[3] | BOOL_FLAG) for r in rows]
    if insert_readings(w, rows, seq, untrusted, fitted) != end - 1:
        raise sqlite3.IntegrityError("journal seq numbering diverged; transaction rolled back")
    if fitted:
        count_fitted(w, fitted)
        if converted is not None:
            converted.extend(fitted)
    private = set()
    if events:
        _fill_events(w, events)
        private = set(map(_RANK, events))
        private.discard(0)
    if ranks:
        names = (
            map(_POINT, cast(list[Reading], records))
            if only
            else (r[1] for r in records if type(r) is Reading)
        )
        private |= class_readings(w, names, seq, ranks)
    return private


_IS_NOT = operator.is_not
_RANK = operator.itemgetter(3)  # of an event's (kind, severity, payload, rank, seq)
FILL_EVENT_SQL = "UPDATE journal SET kind = ?, severity = ?, payload = ?, privacy = ? WHERE seq = ?"


def _event_rows(
    records: list[Record],
    seq: int,
    points: Mapping[str, Any] | None,
    sealer: Sealer | None,
    quality: int | None,
    fitted: list[tuple[str, Any]] | None = None,
) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """(records with each event replaced by its placeholder row (ts, source, NULL, `quality`), the
    events' (kind, severity, payload, rank, seq)): the events found with C-level maps, so a
    flush pays per event, not per reading."""
    at = list(compress(range(len(records)), map(_IS_NOT, map(type, records), repeat(Reading))))
    rows: list[Any] = list(records)
    known: Mapping[str, Any] = points if points is not None else {}
    events: list[tuple[Any, ...]] = []
    for i in at:
        rec = cast(Event, rows[i])
        events.append((*event_row(rec, known, sealer, fitted), seq + i))
        rows[i] = (rec.ts, rec.source, None, quality)
    return rows, events


def _fill_events(w: sqlite3.Connection, events: list[tuple[Any, ...]]) -> None:
    """Give the placeholder rows of `events` (kind, severity, payload, rank, seq) their event
    columns: one UPDATE by rowid per event. Measured against one `UPDATE ... FROM (VALUES ...)`
    per block of events: 3.5 µs an event instead of 10-13 (SQLite materialises the VALUES and
    collects the changes in a table of its own before applying them), 1.12x the records/s of
    the whole pipeline on a stream with 1 % events."""
    cur = w.executemany(FILL_EVENT_SQL, events)
    if cur.rowcount != len(events):
        raise sqlite3.IntegrityError("journal event rows missing; transaction rolled back")
