"""Every read of the journal's tables, as named queries: the store owns its SQL.

`JournalQueries` runs each query on the connection of the object it belongs to, under that
connection's lock, in the caller's thread: the `Journal` itself (its read connection, beside the
writer's) or a `JournalReader` (a connection of its own, so a sink's or the pull API's paging
never waits on, or blocks, the event loop's connection). Callers that must not block the event
loop call these methods via `asyncio.to_thread`, as they always did.
"""

from __future__ import annotations

import json
import operator
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson

from edge import paths
from edge.store.backup import RESTORED_META
from edge.store.rows import (
    READINGS_WHERE,
    SELECT_COLS,
    EventMatch,
    JournalClosed,
    connect,
    open_rows,
    row_to_record,
)

Row = tuple[Any, ...]  # (seq, ts, point, value, quality, kind, severity, payload)
ROWS_SQL = f"SELECT {SELECT_COLS} FROM journal WHERE seq > ? ORDER BY seq LIMIT ?"
# the rows of `read_rows`, each with the class the journal stored it with (PRIVACY_RANK) last
CLASSED_ROWS_SQL = f"SELECT {SELECT_COLS}, privacy FROM journal WHERE seq > ? ORDER BY seq LIMIT ?"
STORED_EVENT_SQL = "SELECT ts, point, payload FROM journal WHERE seq = ?"
KIND_AFTER_SQL = "SELECT seq, payload FROM journal WHERE seq > ? AND kind = ? ORDER BY seq"
# a sealed value or payload in the journal (`edge.privacy.atrest.sealed_data`): one row is enough
# to know (no index on purpose: the scan runs only when keys.db is missing or empty)
SEALED_ROW_SQL = (
    "SELECT 1 FROM journal WHERE privacy >= 1 AND (typeof(payload) = 'blob' OR typeof(value) = 'blob') "
    "LIMIT 1"
)

# A stream page reads each reading without the three columns only an event fills: a NULL column
# costs the Python row as much as a value (~0.6 ms per 10,000 rows each); its events are read
# whole by a second query over the page's range, in the same read transaction.
STREAM_COLS = "seq, ts, point, value, quality, kind"
STREAM_SQL = f"SELECT {STREAM_COLS} FROM journal WHERE seq > ? ORDER BY seq LIMIT ?"
STREAM_EVENTS_SQL = (
    f"SELECT {SELECT_COLS} FROM journal WHERE seq >= ? AND seq <= ? AND kind IS NOT NULL ORDER BY seq"
)
# the column names of a row as a cursor describes them, by the row's length: what `open_rows` needs
_COLUMNS = {
    len(cols.split(",")): tuple((name.strip(),) for name in cols.split(","))
    for cols in (SELECT_COLS, STREAM_COLS)
}
_KIND = operator.itemgetter(5)

# A page of plain readings (no event, no flag in a quality, no sealed value), the common page, read
# by column: pysqlite hands each cell over with a release and re-take of the GIL (Python 3.11),
# which made the 6-column read of a page about 60 % of building it. SQLite finds the page's end,
# says whether the page is plain and gives its points as one JSON array (a string survives JSON
# exactly); only ts and value are fetched a row at a time, as only a fetch carries a REAL exactly
# (SQLite prints one with 15 significant digits, Python and the encoder with up to 17).
PLAIN_FIRST_SQL = "SELECT seq FROM journal WHERE seq > ? ORDER BY seq LIMIT 1"
PLAIN_END_SQL = "SELECT seq FROM journal WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?"
PLAIN_LAST_SQL = "SELECT max(seq) FROM journal WHERE seq > ?"
# A plain reading: no event, no flagged or missing quality, no sealed value.
_PLAIN_ROW = "kind IS NULL AND quality BETWEEN 0 AND 2 AND typeof(value) != 'blob'"
# One aggregate, as each costs SQLite about as much as the JSON array: the rows that are not plain
# readings (each counts OTHER_ROW) and the plain ones' qualities (0 good, 1 bad, 2 stale) summed.
OTHER_ROW = 1 << 32
PLAIN_CHECK_SQL = (
    f"SELECT count(*), sum(CASE WHEN {_PLAIN_ROW} THEN quality ELSE {OTHER_ROW} END), "
    "json_group_array(point) FROM journal WHERE seq > ? AND seq <= ?"
)
PLAIN_QUALITY_SQL = "SELECT group_concat(quality, '') FROM journal WHERE seq > ? AND seq <= ?"
PLAIN_VALUES_SQL = "SELECT ts, value FROM journal WHERE seq > ? AND seq <= ? ORDER BY seq"
# A mixed page (a few rows that are not plain readings among plain ones: the common page of a
# stream with events): the plain rows' quality digits with a 0 in place of each other row's; the
# page's seqs when they have gaps; the other rows, and the readings of points given as a JSON
# array, read whole (as `read_stream` reads them, opened after).
MIXED_QUALITY_SQL = (
    f"SELECT group_concat(CASE WHEN {_PLAIN_ROW} THEN quality ELSE 0 END, '') "
    "FROM journal WHERE seq > ? AND seq <= ?"
)
MIXED_SEQS_SQL = "SELECT json_group_array(seq) FROM journal WHERE seq > ? AND seq <= ?"
MIXED_ROWS_SQL = (
    f"SELECT {SELECT_COLS} FROM journal WHERE seq > ? AND seq <= ? "
    f"AND (NOT coalesce({_PLAIN_ROW}, 0) OR point IN (SELECT value FROM json_each(?))) ORDER BY seq"
)

HISTORY_SQL = (
    "SELECT seq, ts, point, value FROM journal "
    "WHERE seq > ? AND seq <= ? AND kind IS NULL AND (quality & 3) = 0 ORDER BY seq LIMIT ?"
)
# only readings older than a time (the journal is not in ts order)
HISTORY_BEFORE_SQL = (
    "SELECT seq, ts, point, value FROM journal WHERE seq > ? AND seq <= ? AND kind IS NULL "
    "AND (quality & 3) = 0 AND ts < ? ORDER BY seq LIMIT ?"
)


class StreamRows(NamedTuple):
    """A stream page: its rows (a reading as (seq, ts, point, value, quality, None), an event
    as `Row`), sealed values opened; apart, the rows that held a sealed value, as stored and as
    they opened. Opening those again later says whether the page still reads the same (a subject
    forgotten since opens as erased)."""

    rows: list[Row]
    stored: list[Row]
    opened: list[Row]
    events: int  # how many of the rows are events


class PlainRows(NamedTuple):
    """A stream page of plain readings by column: reading i is (seqs[i], values[i][0] (its ts),
    points[i], values[i][1], the quality digit quality[i]). Its seqs are contiguous, unless it
    is a mixed page (`others` not None): then they are the page's seqs, and its rows that are not
    plain readings (or are readings of a withheld point) are `others`, read as `read_stream`
    reads rows; at their places the columns hold what they hold (and a 0 quality digit)."""

    seqs: Sequence[int]
    points: list[str]
    values: list[tuple[float, Any]]
    quality: str | None  # a digit per reading (0 good, 1 bad, 2 stale); None when all are good
    others: StreamRows | None = None


class JournalQueries:
    """The named reads. Needs `_read` (a connection, None when closed) and `_read_lock`."""

    _read: sqlite3.Connection | None
    _read_lock: threading.Lock

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        if self._read is None:
            raise JournalClosed("journal is not open")
        with self._read_lock:
            return self._read.execute(sql, tuple(args)).fetchall()

    # ------------------------------------------------------------ records in seq order
    def read_rows(self, after: int, limit: int) -> list[Row]:
        """Raw rows with seq > after, in seq order (see `row_to_record`)."""
        return self._query(ROWS_SQL, (after, limit))

    def read_classed_rows(self, after: int, limit: int) -> list[Row]:
        """`read_rows(after, limit)`, each row with the class the journal stored it with
        (PRIVACY_RANK) last."""
        return self._query(CLASSED_ROWS_SQL, (after, limit))

    def read_stream(self, after: int, limit: int) -> StreamRows:
        """The rows with seq > after, in seq order, at most `limit`, shaped for the pull API (see
        `StreamRows`)."""
        if self._read is None:
            raise JournalClosed("journal is not open")
        with self._read_lock:
            conn = self._read
            path = getattr(conn, "path", "")
            cur = conn.cursor(sqlite3.Cursor)  # the rows as stored: opened below where sealed
            cur.execute("BEGIN")  # one snapshot for both reads
            try:
                stored = cur.execute(STREAM_SQL, (after, limit)).fetchall()
                kinds = list(map(_KIND, stored))
                events = (
                    []
                    if kinds.count(None) == len(kinds)
                    else cur.execute(STREAM_EVENTS_SQL, (stored[0][0], stored[-1][0])).fetchall()
                )
            finally:
                cur.execute("COMMIT")
        rows = open_rows(path, _COLUMNS[6], stored)
        sealed = rows is not stored  # found by one C-level type scan of the value column
        if events:
            rows = list(rows) if rows is stored else rows
            at = {r[0]: i for i, r in enumerate(stored) if r[5] is not None}
            for raw, event in zip(events, open_rows(path, _COLUMNS[8], events), strict=True):
                rows[at[raw[0]]], stored[at[raw[0]]] = event, raw
                sealed = sealed or event is not raw
        if not sealed:
            return StreamRows(rows, [], [], len(events))
        return _stream_rows(stored, rows, len(events))

    def read_plain(
        self, after: int, limit: int, withheld: frozenset[str] = frozenset(), others: int = 0
    ) -> PlainRows | None:
        """The page `read_stream(after, limit)` reads, by column, when it holds plain readings
        alone (no event, no quality flag, no sealed value), without gaps in its seqs and with no
        point among `withheld`; None otherwise (then `read_stream` reads it). With `others`, a
        page with gaps, or with up to that many rows that are not plain or are of a point among
        `withheld`, is read too, as a mixed page (see `PlainRows`)."""
        if self._read is None:
            raise JournalClosed("journal is not open")
        if limit < 1:
            return None
        with self._read_lock:
            conn = self._read
            cur = conn.cursor(sqlite3.Cursor)  # the rows as stored: a sealed one is refused
            cur.execute("BEGIN")  # one snapshot for every query of the page
            try:
                page = self._plain(cur, after, limit, withheld, others)
            finally:
                cur.execute("COMMIT")
        if page is None or page.others is None:
            return page
        return page._replace(others=_opened(getattr(conn, "path", ""), page.others.rows))

    @staticmethod
    def _plain(
        cur: sqlite3.Cursor, after: int, limit: int, withheld: frozenset[str], most: int
    ) -> PlainRows | None:
        head = cur.execute(PLAIN_FIRST_SQL, (after,)).fetchone()
        if head is None:
            return PlainRows(range(0), [], [], None)
        end = cur.execute(PLAIN_END_SQL, (after, limit - 1)).fetchone()
        last = end[0] if end is not None else cur.execute(PLAIN_LAST_SQL, (after,)).fetchone()[0]
        try:
            n, total, points = cur.execute(PLAIN_CHECK_SQL, (after, last)).fetchone()
        except sqlite3.OperationalError:  # a point stored as a BLOB, which JSON cannot hold
            return None
        other, qualities = divmod(total, OTHER_ROW)
        gaps = n != last - head[0] + 1
        if other > most or (gaps and most < 1):
            return None
        names: list[str] = orjson.loads(points)
        if len(names) != n:
            return None
        hit = withheld.intersection(names) if withheld and not withheld.isdisjoint(names) else None
        if not (other or gaps or hit):  # plain readings alone (most pages)
            quality = cur.execute(PLAIN_QUALITY_SQL, (after, last)).fetchone()[0] if qualities else None
            values = cur.execute(PLAIN_VALUES_SQL, (after, last)).fetchall()
            return PlainRows(range(head[0], last + 1), names, values, quality)
        if hit is not None and other + sum(map(hit.__contains__, names)) > most:
            return None  # (with most 0, any hit)
        seqs = orjson.loads(cur.execute(MIXED_SEQS_SQL, (after, last)).fetchone()[0]) if gaps else None
        quality = None
        if qualities:
            quality = cur.execute(
                MIXED_QUALITY_SQL if other else PLAIN_QUALITY_SQL, (after, last)
            ).fetchone()[0]
        values = cur.execute(PLAIN_VALUES_SQL, (after, last)).fetchall()
        listed = orjson.dumps(sorted(hit) if hit is not None else []).decode()
        rows = cur.execute(MIXED_ROWS_SQL, (after, last, listed)).fetchall() if other or hit else []
        if len(values) != n or (seqs is not None and len(seqs) != n):
            return None
        return PlainRows(
            seqs or range(head[0], last + 1), names, values, quality, StreamRows(rows, [], [], 0)
        )

    def reopen(self, stored: list[Row]) -> list[Row]:
        """Rows of `StreamRows.stored` opened again, as a read now would open them."""
        if self._read is None:
            raise JournalClosed("journal is not open")
        path = getattr(self._read, "path", "")
        return [open_rows(path, _COLUMNS[len(r)], [r])[0] for r in stored]

    def count_range(self, after: int, upto: int) -> int:
        """How many records the journal holds with after < seq <= upto (fewer than were read
        there: some were deleted since, by retention or to make room)."""
        return int(
            self._query("SELECT count(*) FROM journal WHERE seq > ? AND seq <= ?", (after, upto))[0][0]
        )

    def read_range(self, after: int, upto: int) -> list[Row]:
        """Raw rows with after < seq <= upto, in seq order."""
        return self._query(
            f"SELECT {SELECT_COLS} FROM journal WHERE seq > ? AND seq <= ? ORDER BY seq", (after, upto)
        )

    def read(self, after: int, limit: int) -> list[dict[str, Any]]:
        return [row_to_record(r) for r in self.read_rows(after, limit)]

    def tail(self, n: int) -> list[dict[str, Any]]:
        rows = self._query(f"SELECT {SELECT_COLS} FROM journal ORDER BY seq DESC LIMIT ?", (n,))
        return [row_to_record(r) for r in reversed(rows)]

    def newest_readings(
        self, point: str, since: float, until: float | None, after: int, limit: int
    ) -> list[Row]:
        """The newest `limit` raw readings of `point` with seq > after and since <= ts (<= until
        when given), newest first."""
        sql = f"SELECT {SELECT_COLS} FROM journal WHERE seq > ? AND point = ? AND kind IS NULL AND ts >= ?"
        args: list[Any] = [after, point, since]
        if until is not None:
            sql += " AND ts <= ?"
            args.append(until)
        return self._query(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit))

    def newest_events(self, match: EventMatch, after: int, limit: int) -> list[Row]:
        """The newest `limit` raw events with seq > after that `match`, newest first."""
        conds, args = match.where("point")
        where = " AND ".join(["seq > ?", "kind IS NOT NULL", *conds])
        sql = f"SELECT {SELECT_COLS} FROM journal WHERE {where} ORDER BY seq DESC LIMIT ?"
        return self._query(sql, (after, *args, limit))

    def numeric_readings(
        self, point: str, after: int, since: float, before: float
    ) -> list[tuple[float, Any]]:
        """(ts, value) of the good numeric readings of `point` with seq > after and
        since <= ts < before, in no particular order (what a trend bucket averages)."""
        return self._query(
            f"SELECT ts, value FROM journal WHERE seq > ? AND point = ? AND {READINGS_WHERE} "
            "AND ts >= ? AND ts < ?",
            (after, point, since, before),
        )

    def readings_after(self, seq: int) -> list[tuple[float, str, Any, int]]:
        """(ts, point, value, quality) of every reading with seq > `seq`, in seq order."""
        return self._query(
            "SELECT ts, point, value, quality FROM journal WHERE seq > ? AND kind IS NULL ORDER BY seq",
            (seq,),
        )

    def history_page(
        self, after: int, upto: int, limit: int, before_ts: float | None = None
    ) -> list[tuple[int, float, str, Any]]:
        """(seq, ts, point, value) of good readings with after < seq <= upto, in seq order, at most
        `limit`; with `before_ts`, only those with ts < before_ts."""
        if before_ts is None:
            return self._query(HISTORY_SQL, (after, upto, limit))
        return self._query(HISTORY_BEFORE_SQL, (after, upto, before_ts, limit))

    # ------------------------------------------------------------ operator KPIs (edge.kpi)
    def reading_counts(
        self, after: int, upto: int, bounds: list[float]
    ) -> list[tuple[str, int, int, int, float, int, int]]:
        """Per point and per time bucket of the readings with after < seq <= upto: (point,
        bucket, good readings, all readings, oldest ts, lowest seq, highest seq). Bucket i holds
        ts < bounds[i] (and >= bounds[i-1]); the last bucket, len(bounds), the rest. One
        aggregate over the range."""
        case = " ".join(f"WHEN ts < ? THEN {i}" for i in range(len(bounds)))
        bucket = f"CASE {case} ELSE {len(bounds)} END" if bounds else "0"
        rows = self._query(
            f"SELECT point, {bucket} AS b, sum((quality & 3) = 0), count(*), min(ts), min(seq), max(seq) "
            "FROM journal "
            "WHERE seq > ? AND seq <= ? AND kind IS NULL GROUP BY point, b",
            (*bounds, after, upto),
        )
        return [(r[0], int(r[1]), int(r[2]), int(r[3]), float(r[4]), int(r[5]), int(r[6])) for r in rows]

    def events_and_readings_of(
        self, after: int, upto: int, points: list[str]
    ) -> list[tuple[int, float, str, int | None, str | None, str | None, str | None]]:
        """(seq, ts, point or source, quality, kind, severity, payload) of every event and of the
        readings of `points` with after < seq <= upto, in seq order."""
        return self._query(
            "SELECT seq, ts, point, quality, kind, severity, payload FROM journal "
            "WHERE seq > ? AND seq <= ? AND (kind IS NOT NULL OR point IN (SELECT value FROM json_each(?))) "
            "ORDER BY seq",
            (after, upto, json.dumps(points)),
        )

    def first_good_reading_of_device(self, device: str, after: int, upto: int) -> tuple[int, float] | None:
        """(seq, ts) of the first good reading of a point of `device` with after < seq <= upto."""
        rows = self._query(
            "SELECT seq, ts FROM journal WHERE seq > ? AND seq <= ? AND kind IS NULL "
            "AND (quality & 3) = 0 AND point > ? AND point < ? ORDER BY seq LIMIT 1",
            (after, upto, device + ".", device + "/"),
        )
        return (int(rows[0][0]), float(rows[0][1])) if rows else None

    def last_at_or_before(self, seq: int) -> tuple[int, float] | None:
        """(seq, ts) of the last record with seq <= `seq`."""
        rows = self._query("SELECT seq, ts FROM journal WHERE seq <= ? ORDER BY seq DESC LIMIT 1", (seq,))
        return (int(rows[0][0]), float(rows[0][1])) if rows else None

    # ------------------------------------------------------------ single values
    def oldest_after(self, seq: int) -> float | None:
        """Timestamp of the first record after `seq`: the oldest one a cursor at `seq` has not passed."""
        rows = self._query("SELECT ts FROM journal WHERE seq > ? ORDER BY seq LIMIT 1", (seq,))
        return float(rows[0][0]) if rows else None

    def kind_of(self, seq: int) -> str | None:
        """The kind of the event at `seq`; None for a reading or a seq the journal does not hold."""
        rows = self._query("SELECT kind FROM journal WHERE seq=?", (seq,))
        return rows[0][0] if rows else None

    def min_seq(self) -> int | None:
        """The oldest seq the journal holds (None: it is empty)."""
        rows = self._query("SELECT min(seq) FROM journal")
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def unsent(self, cursor: int, committed: int) -> tuple[int, float | None]:
        """(rows, timestamp of the oldest) a cursor at `cursor` can still fetch, up to `committed`:
        counted from the first record the journal still holds after the cursor, so the records it
        dropped before they were fetched (`drop_oldest`, a private class past its retention) are not
        a backlog (they are counted as drops where they happened). One indexed look-up: a status
        read at every scrape never counts rows; a record of a private class deleted at its
        retention in the middle of the backlog is still among the rows."""
        if committed <= cursor:
            return 0, None
        first = self.first_at_or_after(cursor + 1)
        if first is None or first[0] > committed:
            return 0, None
        rows = committed - first[0] + 1
        gap = self.restore_gap()
        if gap is not None:  # seqs a restore skipped (--continue-after): never records, never sent
            low, high = max(gap[0], first[0]), min(gap[1], committed)
            rows -= max(0, high - low + 1)
        return rows, float(first[1])

    def restore_gap(self) -> tuple[int, int] | None:
        """(first, last) of the seqs a restore skipped, which no record of this journal holds: the
        range of its note (`meta.restored`, edge/store/backup.py), None when there is none. One
        primary-key probe."""
        rows = self._query("SELECT value FROM meta WHERE key=?", (RESTORED_META,))
        if not rows:
            return None
        try:
            note = json.loads(rows[0][0])
            first, last = int(note["first_seq"]), int(note["last_seq"])
        except (TypeError, ValueError, KeyError):
            return None
        return (first, last) if first <= last else None

    def first_at_or_after(self, seq: int) -> tuple[int, float] | None:
        """(seq, ts) of the first record with seq >= `seq`."""
        rows = self._query("SELECT seq, ts FROM journal WHERE seq >= ? ORDER BY seq LIMIT 1", (seq,))
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def first_seq_since(self, ts: float) -> int | None:
        """The lowest seq whose record has ts >= `ts` (a full scan: the journal has no ts index)."""
        rows = self._query("SELECT MIN(seq) FROM journal WHERE ts >= ?", (ts,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def last_seq_before(self, ts: float) -> int | None:
        """The highest seq whose record has ts < `ts` (a full scan)."""
        rows = self._query("SELECT MAX(seq) FROM journal WHERE ts < ?", (ts,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def device_counts(self, after: int) -> dict[str, tuple[int, float]]:
        """Per device (the point id up to its first dot): readings with seq > after and the newest
        reading's ts."""
        rows = self._query(
            "SELECT substr(point, 1, instr(point, '.') - 1) AS device, count(*), max(ts) FROM journal "
            "WHERE seq > ? AND kind IS NULL GROUP BY device",
            (after,),
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    def count_by_class(self) -> dict[int, int]:
        """Rows held now per privacy class (PRIVACY_RANK -> count; a class without rows is absent).
        A full scan: for reports, not for the hot path. Needs schema v3 (the `privacy` column)."""
        rows = self._query("SELECT privacy, count(*) FROM journal GROUP BY privacy")
        return {int(r[0]): int(r[1]) for r in rows}

    def pages(self) -> tuple[int, int, int]:
        """(page size, pages in the file, free pages among them): the file's size and its data's."""
        page_size = self._query("PRAGMA page_size")[0][0]
        pages = self._query("PRAGMA page_count")[0][0]
        free = self._query("PRAGMA freelist_count")[0][0]
        return int(page_size), int(pages), int(free)

    # ------------------------------------------------------------ cursors
    def get_cursor(self, name: str) -> int | None:
        rows = self._query("SELECT seq FROM cursors WHERE name=?", (name,))
        return int(rows[0][0]) if rows else None

    def consumer_cursor(self, name: str) -> tuple[int, float] | None:
        """(seq, updated) of the pull consumer `name`'s cursor; None when it has none."""
        rows = self._query("SELECT seq, updated FROM cursors WHERE name=? AND kind='consumer'", (name,))
        return (int(rows[0][0]), float(rows[0][1])) if rows else None

    def cursors(self) -> dict[str, tuple[str, int, float]]:
        return {
            r[0]: (r[1], int(r[2]), float(r[3]))
            for r in self._query("SELECT name, kind, seq, updated FROM cursors")
        }


def _opened(path: str, raw: list[Row]) -> StreamRows:
    """Whole rows (`SELECT_COLS`) as `read_stream` gives them: a reading without the columns only
    an event fills, sealed values opened, and apart the rows that held one, as stored and opened."""
    stored = [r if r[5] is not None else r[:6] for r in raw]
    rows = [open_rows(path, _COLUMNS[len(r)], [r])[0] if bytes in set(map(type, r)) else r for r in stored]
    return _stream_rows(stored, rows, len(stored) - list(map(_KIND, stored)).count(None))


def _stream_rows(stored: list[Row], rows: list[Row], events: int) -> StreamRows:
    """`rows` (`stored` with sealed values opened) and, apart, the rows that held one, as stored
    and as opened (what the read-ahead checks opens the same again)."""
    hit = [i for i, (a, b) in enumerate(zip(stored, rows, strict=True)) if a is not b]
    return StreamRows(rows, [stored[i] for i in hit], [rows[i] for i in hit], events)


READER_CACHE_KIB = 512  # a reader's page cache: the seq index's inner pages, not the rows'


class JournalReader(JournalQueries):
    """A read connection of its own on the journal at `path`. Thread-safe; call it via `to_thread`."""

    def __init__(self, path: str) -> None:
        self._read = connect(path)
        # Its reads page forward through records read once (a sink's batches, a consumer's pages):
        # SQLite's default 2 MB page cache per connection would fill with pages never read again,
        # held for as long as the gateway runs, one per sink reader and one for the pull API.
        self._read.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
        self._read_lock = threading.Lock()

    def close(self) -> None:
        conn = self._read
        if conn is None:
            return
        with self._read_lock:
            self._read = None  # later reads raise JournalClosed, as on a closed Journal
            try:
                conn.close()
            except sqlite3.Error:
                pass


def stored_event_at(path: str, seq: int) -> tuple[float, str | None, Any] | None:
    """(ts, source, payload as stored: a sealed one stays an envelope) of the journal file's row
    `seq`, None when there is none. sqlite3.Error when the file cannot be read."""
    conn = sqlite3.connect(paths.sqlite_uri(path), uri=True, timeout=10)
    try:
        row = conn.execute(STORED_EVENT_SQL, (int(seq),)).fetchone()
    finally:
        conn.close()
    return None if row is None else (row[0], row[1], row[2])


def kind_payloads_after(path: str, kind: str, after: int) -> list[tuple[int, Any]]:
    """(seq, payload) of the journal file's events of `kind` above seq `after`, in seq order; for a
    file that is no live journal (one a restore replaces), read without writing: opened read-write
    so a -wal without its -shm still reads. sqlite3.Error when it cannot be read."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute("PRAGMA query_only=1")
        return conn.execute(KIND_AFTER_SQL, (after, kind)).fetchall()
    finally:
        conn.close()
