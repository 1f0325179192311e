"""The trend index: per-minute rollups of every numeric and bool point, so a 24-hour or 7-day
trend does not have to scan the journal (which has no index on point, on purpose: an index costs
a quarter of the insert rate).

A follower reads the journal behind the writer and keeps, per point and minute, the count, min,
max and sum of the good numeric readings (bools count as 0/1) in its own SQLite file (`trend.db`
beside the journal), so it never contends for the journal's write lock. Each chunk of the
journal's seq range is aggregated by one INSERT ... SELECT ... GROUP BY inside SQLite (the sqlite3
module releases the GIL while SQLite works: no Python runs per row), and the follower's cursor
moves in the same transaction of the trend file: a crash can neither count a row twice nor skip
one. A missing or unreadable trend file is rebuilt from what the journal still holds.

The same transaction copies the chunk's events (rows with a kind: alerts, gate passages, drops)
into an `events` table of the trend file, indexed on kind, source and ts, so the UI's Alerts &
events page can filter days of events without scanning the journal. Events are rare next to
readings: the copy costs little.

Each bucket and event keeps its privacy class (the journal row's; a bucket the most private of its
readings), so personal and sensitive ones are deleted at their class's retention as the journal's
are, and the rest at keep_history: by the trusted time the journal's retention passes hand over
(`Journal.add_expirer`, under its clock guard), never by the wall clock read here.

`TrendIndex` is the runtime component (`create`); `history_buckets` answers the history API with
buckets plus the newest readings the follower has not rolled up yet, so a trend reaches "now";
`newest_events` answers the events API the same way: the index's events up to its cursor, the
journal's rows after it (the UI's events page, and the runtime's `recent_events` for drivers,
through `TrendIndex.newest_events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import paths
from edge.clock import boottime
from edge.store import retention, space
from edge.store.rows import READINGS_WHERE, EventMatch, checkpoint, connect

if TYPE_CHECKING:
    from edge.model import Event
    from edge.runtime import Runtime
    from edge.store.journal import Journal

log = logging.getLogger("edge.store.trend")

SCHEMA_VERSION = 3  # 2: the events table; 3: the privacy class of each bucket and event
META = "CREATE TABLE IF NOT EXISTS trend.meta (key TEXT PRIMARY KEY, value)"
SCHEMA = """
CREATE TABLE IF NOT EXISTS trend.minute (
    point TEXT NOT NULL,
    bucket INTEGER NOT NULL,   -- floor(ts / 60): the minute, UTC epoch minutes
    n INTEGER NOT NULL,        -- good numeric readings in that minute
    vmin, vmax, vsum,
    privacy INTEGER NOT NULL DEFAULT 0,  -- the most private class (PRIVACY_RANK) of its readings
    PRIMARY KEY (point, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trend.events (
    seq INTEGER PRIMARY KEY,   -- the journal seq (acknowledgements refer to it)
    ts REAL NOT NULL,
    source TEXT,
    kind TEXT NOT NULL,
    severity TEXT,
    payload TEXT,
    privacy INTEGER NOT NULL DEFAULT 0  -- the journal row's class
);
-- an index on (x) is ordered by (x, seq): "kind = ? ORDER BY seq DESC LIMIT n" reads n entries
CREATE INDEX IF NOT EXISTS trend.events_kind ON events(kind);
CREATE INDEX IF NOT EXISTS trend.events_kind_source ON events(kind, source);
CREATE INDEX IF NOT EXISTS trend.events_source ON events(source);
CREATE INDEX IF NOT EXISTS trend.events_ts ON events(ts);
-- personal and sensitive rows by class and age, for their retention: partial, so the public rows
-- (most of a site) cost these indexes nothing
CREATE INDEX IF NOT EXISTS trend.minute_private ON minute(privacy, bucket) WHERE privacy > 0;
CREATE INDEX IF NOT EXISTS trend.events_private ON events(privacy, ts) WHERE privacy > 0;
"""
EVENT_COLS = "seq, ts, source, kind, severity, payload"
# Each chunk is aggregated into `temp.stage` in a transaction that only reads the journal; every
# FLUSH_SEQ seqs (and whenever the follower reaches the journal's end) the stage is merged into
# trend.minute, with the events and the cursor, in one transaction that does not read the journal.
# Upserting every chunk into trend.db rewrote the same leaf pages (one per point) chunk after
# chunk: the commits and the upserts took half of the rollup's time.
STAGE_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS stage (
    point TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, vmin, vmax, vsum,
    privacy INTEGER NOT NULL, PRIMARY KEY (point, bucket)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS stage_events (
    seq INTEGER PRIMARY KEY, ts REAL, source TEXT, kind TEXT, severity TEXT, payload TEXT, privacy INTEGER
);
CREATE TEMP TABLE IF NOT EXISTS stage_meta (key TEXT PRIMARY KEY, value);
"""
STAGE_SQL = f"""
INSERT INTO temp.stage(point, bucket, n, vmin, vmax, vsum, privacy)
SELECT point, CAST(ts / 60 AS INTEGER), count(*), min(value), max(value), sum(value), max(privacy)
FROM main.journal WHERE seq > ? AND seq <= ? AND {READINGS_WHERE}
GROUP BY 1, 2
ON CONFLICT(point, bucket) DO UPDATE SET
    n = n + excluded.n, vmin = min(vmin, excluded.vmin), vmax = max(vmax, excluded.vmax),
    vsum = vsum + excluded.vsum, privacy = max(privacy, excluded.privacy)
"""
EVENTS_SQL = """
INSERT INTO temp.stage_events(seq, ts, source, kind, severity, payload, privacy)
SELECT seq, ts, point, kind, severity, payload, privacy FROM main.journal
WHERE seq > ? AND seq <= ? AND kind IS NOT NULL
"""
STAGED_SQL = (
    "INSERT INTO temp.stage_meta(key, value) VALUES('staged', ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)
MERGE_SQL = """
INSERT INTO trend.minute(point, bucket, n, vmin, vmax, vsum, privacy)
SELECT point, bucket, n, vmin, vmax, vsum, privacy FROM temp.stage ORDER BY point, bucket
ON CONFLICT(point, bucket) DO UPDATE SET
    n = n + excluded.n, vmin = min(vmin, excluded.vmin), vmax = max(vmax, excluded.vmax),
    vsum = vsum + excluded.vsum, privacy = max(privacy, excluded.privacy)
"""
MERGE_EVENTS_SQL = """
INSERT OR IGNORE INTO trend.events(seq, ts, source, kind, severity, payload, privacy)
SELECT seq, ts, source, kind, severity, payload, privacy FROM temp.stage_events
"""
CURSOR_SQL = (
    "INSERT INTO trend.meta(key, value) VALUES('cursor', ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)
# Old buckets of every point: the points are walked by a skip-scan of the primary key (one
# b-tree seek per point), so trimming never scans the whole table.
TRIM_SQL = """
WITH RECURSIVE points(p) AS (
    SELECT (SELECT min(point) FROM trend.minute)
    UNION ALL SELECT (SELECT min(point) FROM trend.minute WHERE point > p) FROM points WHERE p IS NOT NULL
)
DELETE FROM trend.minute WHERE point IN (SELECT p FROM points WHERE p IS NOT NULL) AND bucket < ?
"""
# A personal or sensitive point's buckets and events of a class past its retention, through the
# partial indexes (`privacy > 0` repeated so that SQLite may use them). A bucket goes once its
# first second is past (bucket < ceil(cutoff / 60)): no reading past retention stays in any count.
EXPIRE_BUCKETS_SQL = "DELETE FROM trend.minute WHERE privacy > 0 AND privacy = ? AND bucket < ?"
EXPIRE_EVENTS_SQL = "DELETE FROM trend.events WHERE privacy > 0 AND privacy = ? AND ts < ?"
EXPIRED_COUNTERS = ("retention_expired_buckets", "retention_expired_events")
ADD_META_SQL = (
    "INSERT INTO trend.meta(key, value) VALUES(?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value"
)

CHUNK_SEQ = 10_000  # journal seqs per read transaction: short snapshots, the WAL can checkpoint between
FLUSH_SEQ = 100_000  # journal seqs staged in memory before they go into trend.db (catching up only)
IDLE_INTERVAL = 2.0  # seconds between rollups once caught up (not one per group commit)
TRIM_INTERVAL = 600.0
FOLLOWER_NICE = 10
FAR_FUTURE = 1e13  # UTC epoch seconds, year ~318 000: beyond any reading
#: the follower's page cache on the journal, in KiB. It reads each row once, forward: SQLite's
#: default (2 MB a schema) would fill with journal pages never read again and hold them for as
#: long as the gateway runs (the footprint site's follower: 0.1 MB after a minute, +10 kB a minute);
#: it needs only the pages of the rows it is reading
FOLLOWER_JOURNAL_CACHE_KIB = 128
#: the page cache of the trend index itself, in KiB, on the follower's and on the reader's
#: connection: SQLite's default (2 MB each) fills, as the index grows (about 9 kB a minute on the
#: footprint site), with bucket pages a rollup touches once and a chart rarely reads again, and
#: holds them for as long as the gateway runs. The follower's working set is the newest buckets'
#: pages; a 24-hour chart reads under 100 pages. With 256 here and 128 on the follower's journal
#: side (512 and 512 before), `bench.trend --quick` rolled up and charted within its noise (four
#: alternated runs), and the three caches a gateway fills over hours hold 0.9 MB less at most.
TREND_CACHE_KIB = 256
# trend.db's WAL is checkpointed at this many pages (SQLite's default: 1000) and cut back to
# this size after a checkpoint: it shares the journal's filesystem, and a WAL left at the size a
# catch-up grew it to would hold that space for good (SQLite reuses a WAL file, never shrinks it)
TREND_WAL_PAGES = 128
TREND_WAL_LIMIT = 512 * 1024


def default_path(journal_path: str) -> str:
    return paths.trend_path(journal_path)


def open_follower(journal_path: str, trend_path: str) -> sqlite3.Connection:
    """The follower's connection: the journal read-only, the trend file attached as `trend`.

    A trend file of another schema version, or one ahead of the journal (the journal was
    replaced), is emptied: it is derived data, rebuilt from the journal."""
    conn = connect(journal_path, readonly=True)
    try:
        _prepare(conn, trend_path)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, trend_path: str) -> None:
    conn.isolation_level = None
    conn.execute(f"PRAGMA main.cache_size=-{FOLLOWER_JOURNAL_CACHE_KIB}")
    conn.execute("ATTACH DATABASE ? AS trend", (trend_path,))
    conn.execute(f"PRAGMA trend.cache_size=-{TREND_CACHE_KIB}")
    conn.execute("PRAGMA trend.journal_mode=WAL")
    conn.execute("PRAGMA trend.synchronous=NORMAL")
    # the follower writes trend.db alone: the connection's checkpoint threshold is trend.db's
    conn.execute(f"PRAGMA wal_autocheckpoint={TREND_WAL_PAGES}")
    conn.execute(f"PRAGMA trend.journal_size_limit={TREND_WAL_LIMIT}")
    # what retention deletes is overwritten in the file, not left in free space (the WAL is
    # truncated after it: `expire_private`)
    conn.execute("PRAGMA trend.secure_delete=ON")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(META)
    meta = dict(conn.execute("SELECT key, value FROM trend.meta").fetchall())
    journal_last = _journal_last_seq(conn)
    if meta.get("version") != SCHEMA_VERSION or int(meta.get("cursor") or 0) > journal_last:
        if meta:
            log.warning("trend index %s does not match the journal; rebuilding it", trend_path)
        conn.execute("BEGIN IMMEDIATE")
        # dropped, not emptied: a file of an earlier version has tables of an earlier shape
        conn.execute("DROP TABLE IF EXISTS trend.minute")
        conn.execute("DROP TABLE IF EXISTS trend.events")
        conn.execute("DELETE FROM trend.meta")
        _create(conn, SCHEMA)
        conn.execute("INSERT INTO trend.meta(key, value) VALUES('version', ?)", (SCHEMA_VERSION,))
        conn.execute(CURSOR_SQL, (0,))
        conn.execute("COMMIT")
    _create(conn, SCHEMA + STAGE_TABLES)


def _create(conn: sqlite3.Connection, script: str) -> None:
    for stmt in script.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def _open_fresh(journal_path: str, trend_path: str) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm"):
        Path(trend_path + suffix).unlink(missing_ok=True)
    return open_follower(journal_path, trend_path)


def _journal_last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM main.meta WHERE key='last_seq'").fetchone()
    top = conn.execute("SELECT max(seq) FROM main.journal").fetchone()[0]
    return max(int(row[0]) if row else 0, int(top or 0))


def read_cursor(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM trend.meta WHERE key='cursor'").fetchone()
    return int(row[0]) if row else 0


def rollup_chunk(conn: sqlite3.Connection, chunk: int = CHUNK_SEQ) -> tuple[int, int]:
    """Aggregate the next `chunk` seqs into the stage, and move what is staged into trend.db once
    FLUSH_SEQ seqs wait or the journal's end is reached; returns (the cursor in trend.db, the
    journal's newest seq). Rows retention deleted before the follower read them are skipped: the
    range starts at the oldest row still there. A crash loses the stage and the cursor never
    passed it: nothing is counted twice or skipped."""
    conn.execute("BEGIN")  # reads the journal (one snapshot), writes only the in-memory stage
    try:
        cursor = read_cursor(conn)
        row = conn.execute("SELECT value FROM temp.stage_meta WHERE key='staged'").fetchone()
        staged = max(cursor, int(row[0])) if row else cursor
        top = int(conn.execute("SELECT max(seq) FROM main.journal").fetchone()[0] or 0)
        nxt = conn.execute("SELECT min(seq) FROM main.journal WHERE seq > ?", (staged,)).fetchone()[0]
        if nxt is not None:
            hi = min(max(staged, nxt - 1) + chunk, top)
            conn.execute(STAGE_SQL, (staged, hi))
            conn.execute(EVENTS_SQL, (staged, hi))
            conn.execute(STAGED_SQL, (hi,))
            staged = hi
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    if staged > cursor and (staged >= top or staged - cursor >= FLUSH_SEQ):
        cursor = _merge(conn, staged)
    return cursor, top


def _merge(conn: sqlite3.Connection, staged: int) -> int:
    """The stage into trend.minute and trend.events, with the cursor, in one transaction that
    reads no journal page: no snapshot of the journal's WAL is held while trend.db commits."""
    conn.execute("BEGIN")
    try:
        conn.execute(MERGE_SQL)
        conn.execute(MERGE_EVENTS_SQL)
        conn.execute(CURSOR_SQL, (staged,))
        conn.execute("DELETE FROM temp.stage")
        conn.execute("DELETE FROM temp.stage_events")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return staged


def trim(conn: sqlite3.Connection, before_ts: float) -> tuple[int, int]:
    """Delete buckets that end before `before_ts`, and events before it; returns how many of each."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(TRIM_SQL, (math.floor(before_ts / 60),))
        n = int(conn.execute("SELECT changes()").fetchone()[0])  # rowcount: -1 after a WITH
        events = conn.execute("DELETE FROM trend.events WHERE ts < ?", (before_ts,)).rowcount
        conn.execute("COMMIT")
        return n, events
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def expire_private(conn: sqlite3.Connection, cutoffs: dict[int, float]) -> tuple[int, int]:
    """Delete the buckets and events of each personal or sensitive class (`cutoffs`: rank -> the
    time before which it is past its retention) and add them to the index's counters in the same
    transaction; returns (buckets, events) deleted. The caller then truncates the WAL
    (`checkpoint` of the schema `trend`), where the deleted rows' earlier page images still are."""
    buckets = events = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for rank, cutoff in sorted(cutoffs.items()):
            buckets += conn.execute(EXPIRE_BUCKETS_SQL, (rank, math.ceil(cutoff / 60))).rowcount
            events += conn.execute(EXPIRE_EVENTS_SQL, (rank, cutoff)).rowcount
        for name, n in zip(EXPIRED_COUNTERS, (buckets, events), strict=True):
            if n:
                conn.execute(ADD_META_SQL, (name, n))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return buckets, events


def truncate_wal(conn: sqlite3.Connection, wal_path: str) -> bool:
    """trend.db's WAL into its file and truncated, unless it is empty already (a stat, no
    checkpoint: the follower asks after every rollup while the journal's disk is full)."""
    if space.file_size(wal_path) == 0:
        return True
    return checkpoint(conn, "trend")


def read_counters(conn: sqlite3.Connection) -> dict[str, int]:
    """The index's retention counters, as committed with its deletions."""
    marks = ",".join("?" * len(EXPIRED_COUNTERS))
    rows = conn.execute(f"SELECT key, value FROM trend.meta WHERE key IN ({marks})", EXPIRED_COUNTERS)
    return {**dict.fromkeys(EXPIRED_COUNTERS, 0), **{k: int(v) for k, v in rows}}


def _lower_priority() -> None:
    """The follower's thread yields the CPU to the hub and the journal writer (Linux nices
    threads one by one): under a burst it lags, and catches up when the burst is over."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FOLLOWER_NICE)


class TrendIndex:
    """The follower as a runtime component; also the read side for the history API."""

    name = "trend"

    def __init__(
        self,
        journal: Journal,
        path: str,
        *,
        keep_history: float | None = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = boottime,
        idle_interval: float = IDLE_INTERVAL,
        chunk: int = CHUNK_SEQ,
    ) -> None:
        self.journal = journal
        self.path = path
        self.keep_history = keep_history
        self.clock = clock
        self.monotonic = monotonic  # advances the time the journal's last retention pass handed over
        self.idle_interval = idle_interval
        self.chunk = chunk
        self.cursor = 0
        self.buckets = 0
        self.trimmed = 0  # buckets deleted for being older than keep_history, since start
        self.events = 0  # events in the index (as of the last trim, less those expired since)
        self.events_trimmed = 0
        #: personal and sensitive buckets and events deleted at their class's retention, committed
        #: with the deletions in trend.db (since it was last built); `/metrics` shows them too
        self.counters: dict[str, int] = dict.fromkeys(EXPIRED_COUNTERS, 0)
        # the wall time of the journal's last retention pass its clock guard let through (its
        # expirer hands it over): nothing here is deleted by age before the first one
        self._guarded: retention.GuardedTime | None = None
        self._next_expiry = 0.0
        self._handed = asyncio.Event()  # a retention pass handed a time over: wakes the follower
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wal_dirty = False  # deleted private rows may still be in the WAL
        # the journal holds for lack of disk space and asked for trend.db's WAL (give_wal_back)
        self._give_back = False
        self._asked = asyncio.Event()
        self.last_rollup: float | None = None
        self.last_error = ""
        self.rolled = asyncio.Event()  # set after every rollup transaction (tests, benches wait on it)
        self._conn: sqlite3.Connection | None = None
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[Any] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping = asyncio.Event()
        self._next_trim = 0.0

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, "trend-follower", initializer=_lower_priority)
        if self.path == paths.trend_path(self.journal.path):
            try:
                moved = await self._run(paths.adopt_old_trend, self.journal.path)
            except OSError as exc:  # derived data: rebuilt under the new name at worst
                log.warning("trend index: cannot move %s to %s: %s", "trend.db", self.path, exc)
            else:
                if moved:
                    log.info("trend index %s moved to %s (named from the journal)", moved, self.path)
        try:
            self._conn = await self._run(open_follower, self.journal.path, self.path)
        except sqlite3.DatabaseError as exc:  # not a database, or damaged: it is derived data
            log.warning(
                "trend index %s is not a SQLite database or is damaged (%s); it only holds data derived "
                "from the journal: rebuilding it",
                self.path,
                exc,
            )
            self._conn = await self._run(_open_fresh, self.journal.path, self.path)
        self.cursor = read_cursor(self._conn)
        self.counters = read_counters(self._conn)
        self._loop = asyncio.get_running_loop()
        self.journal.add_expirer(self._hand_over)
        self.journal.add_space_reclaimer(self.give_wal_back)
        self.journal.add_own_space(lambda: space.db_bytes(self.path))
        # events copied from the journal keep their sealed payloads: this connection opens them
        self._read = connect(self.path)
        self._read.execute(f"PRAGMA cache_size=-{TREND_CACHE_KIB}")
        self._task = asyncio.create_task(self._follow(), name="trend-follower")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight is not None:  # a rollup running in its thread finishes its transaction
            with contextlib.suppress(Exception):
                await self._inflight
        for conn in (self._conn, self._read):
            if conn is not None:
                conn.close()
        self._conn = self._read = None
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def status(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "lag_rows": max(0, self.journal.committed_seq - self.cursor),
            "buckets": self.buckets,
            "trimmed": self.trimmed,
            "events": self.events,
            "events_trimmed": self.events_trimmed,
            **self.counters,
            "last_rollup": self.last_rollup,
            "last_error": self.last_error,
        }

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn` in the follower's thread; a cancelled caller does not abandon the transaction
        (stop waits for it), so the connection is never closed under a running statement."""
        self._inflight = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(self._inflight)
        finally:
            if self._inflight.done():
                self._inflight = None

    async def _follow(self) -> None:
        assert self._conn is not None
        conn = self._conn
        self.buckets, self.events = await self._run(_count, conn)
        while not self._stopping.is_set():
            try:
                while not self._stopping.is_set():
                    # before the rollup too: a merge that fails for room is not stuck behind it
                    await self._spare_the_disk(conn)
                    cursor, top = await self._run(rollup_chunk, conn, self.chunk)
                    self.cursor = cursor
                    self.last_rollup = self.clock()
                    self.last_error = ""
                    self.rolled.set()
                    await self._spare_the_disk(conn)
                    if cursor >= top:
                        break
                    if self.journal.committed_seq > top:  # the writer is busy: let one commit
                        # (and its WAL checkpoint) pass with no snapshot of ours pinning the WAL
                        await self.journal.wait_committed(self.journal.committed_seq, 0.5)
                await self._expire()  # after catching up: old rows may be rolled up
            except sqlite3.Error as exc:  # e.g. the disk is full: keep the cursor, try again later
                if not self.last_error:
                    log.warning("trend rollup failed: %s", exc)
                self.last_error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_interval):
                    await self._stopping.wait()
            await self._idle()

    async def _idle(self) -> None:
        """Wait until a record past the cursor is committed, the journal's retention hands over a
        trusted time, or the next expiry is due: retention goes on while nothing is journaled."""
        timeout = 60.0
        if self._guarded is not None:
            timeout = min(timeout, max(0.0, self._next_expiry - time.monotonic()))
        committed = asyncio.create_task(self.journal.wait_committed(self.cursor, timeout))
        handed = asyncio.create_task(self._handed.wait())
        asked = asyncio.create_task(self._asked.wait())
        try:
            await asyncio.wait((committed, handed, asked), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (committed, handed, asked):
                task.cancel()
            await asyncio.gather(committed, handed, asked, return_exceptions=True)
        self._handed.clear()

    def give_wal_back(self) -> None:
        """The journal holds for lack of disk space (`Journal.add_space_reclaimer`, its writer
        thread): the follower truncates trend.db's WAL in its own thread, on its connection,
        after the rollup under way (the journal measures again at its next attempt)."""
        self._give_back = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: a stopped gateway
                self._loop.call_soon_threadsafe(self._asked.set)

    async def _spare_the_disk(self, conn: sqlite3.Connection) -> None:
        """Truncate trend.db's WAL when the journal asked for space, and after every rollup while
        its disk is full or close to the reserve (where the journal truncates its own after every
        step): the WAL would otherwise grow, up to its checkpoint, into the room the journal's
        next steps need, and the journal would hold until it asked for it."""
        asked, self._give_back = self._give_back, False
        self._asked.clear()
        if asked or self.journal.disk_full or self.journal.near_reserve:
            await self._run(truncate_wal, conn, self.path + "-wal")

    def _hand_over(self, now: float, retention_s: Mapping[int, float | None]) -> list[Event]:
        """The journal's expirer (its writer thread, only for passes its clock guard lets through):
        keeps the pass's trusted wall time and retention for the follower's thread, which deletes."""
        self._guarded = retention.GuardedTime(now, self.monotonic(), dict(retention_s))
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: a stopped gateway
                self._loop.call_soon_threadsafe(self._handed.set)
        return []

    def guarded_now(self) -> float | None:
        """The trusted wall time to delete by: the journal's last guarded retention pass advanced
        by the monotonic clock; None before the first pass and while the journal's retention is
        paused (a forward jump of the wall clock, until the clock is trusted again)."""
        guarded = self._guarded
        if guarded is None or self.journal.retention_paused is not None:
            return None
        return guarded.now(self.monotonic(), self.clock())

    async def _expire(self) -> None:
        """Age-based deletion, by the guarded time only: personal and sensitive buckets and events
        at their class's retention (as often as the journal's retention passes), everything at
        keep_history (every TRIM_INTERVAL)."""
        mono = time.monotonic()
        due = mono >= self._next_expiry
        if due:  # paused or not: the follower idles until the next one (`_idle`)
            self._next_expiry = mono + self.journal.retention_interval
        guarded, now = self._guarded, self.guarded_now()
        if guarded is None or now is None or self._conn is None:
            return
        conn = self._conn
        if due:
            cutoffs = retention.cutoffs(now, guarded.retention_s, retention.PRIVATE_RANKS)
            buckets, events = await self._run(expire_private, conn, cutoffs) if cutoffs else (0, 0)
            if buckets or events:
                old = self.counters  # replaced whole: /metrics reads it from another thread
                self.counters = {
                    name: old[name] + n for name, n in zip(EXPIRED_COUNTERS, (buckets, events), strict=True)
                }
                self.buckets, self.events = max(0, self.buckets - buckets), max(0, self.events - events)
                self._wal_dirty = True
                log.debug(
                    "trend index: %d buckets and %d events of personal or sensitive data past their "
                    "retention deleted",
                    buckets,
                    events,
                )
        if self.keep_history is not None and mono >= self._next_trim:
            self._next_trim = mono + TRIM_INTERVAL
            buckets, events = await self._run(trim, conn, now - self.keep_history)
            counts = await self._run(_count, conn)
            # all at once: status() never shows a trim whose counts are not in yet
            self.trimmed += buckets
            self.events_trimmed += events
            self.buckets, self.events = counts
            self._wal_dirty = self._wal_dirty or bool(buckets or events)
        if self._wal_dirty:
            self._wal_dirty = not await self._run(checkpoint, conn, "trend")

    async def caught_up(self, timeout: float = 30.0) -> int:
        """Wait until the cursor has reached the journal's committed seq at the time of the call."""
        target = self.journal.committed_seq
        async with asyncio.timeout(timeout):
            while self.cursor < target:
                self.rolled.clear()
                if self.cursor >= target:
                    break
                await self.rolled.wait()
        return self.cursor

    # ------------------------------------------------------------ read side
    def read(self, point: str, lo: int, hi: int, hour: bool) -> tuple[int, list[tuple[Any, ...]]]:
        """(cursor, [(bucket, n, vmin, vmax, vsum)]) for minutes lo..hi of a point, in one
        snapshot, as minutes or grouped into hours."""
        key = "bucket / 60" if hour else "bucket"
        sql = (
            f"SELECT {key}, sum(n), min(vmin), max(vmax), sum(vsum) FROM minute "
            "WHERE point = ? AND bucket >= ? AND bucket <= ? GROUP BY 1 ORDER BY 1"
        )
        return self._snapshot(sql, (point, lo, hi))

    def read_events(self, match: EventMatch, limit: int) -> tuple[int, list[tuple[Any, ...]]]:
        """(cursor, the newest `limit` events that `match`, newest first) in one snapshot. The
        rows have the journal's shape (seq, ts, point, value, quality, kind, severity, payload),
        the source in `point`."""
        conds, args = match.where("source")
        sql = (
            "SELECT seq, ts, source, NULL, NULL, kind, severity, payload FROM events "
            f"WHERE {' AND '.join(conds or ['1'])} ORDER BY seq DESC LIMIT ?"
        )
        return self._snapshot(sql, (*args, limit))

    def newest_events(
        self, match: EventMatch, limit: int, scan_floor: int
    ) -> tuple[list[tuple[Any, ...]], int, int | None]:
        """The events of the index and the journal's tail after its cursor (`newest_events`),
        for a reader that finds the index as a component (the runtime's `EventIndex`)."""
        return newest_events(self.journal, self, match, limit, scan_floor)

    def event_kind(self, seq: int) -> str | None:
        """The kind of the indexed event at `seq` (None: the index holds no event there)."""
        _, rows = self._snapshot("SELECT kind FROM events WHERE seq = ?", (seq,))
        return rows[0][0] if rows else None

    def latest_events(self, kind: str) -> tuple[int, list[tuple[Any, ...]]]:
        """(cursor, the newest event of `kind` from each source and point), rows as in
        `read_events`. The point is the payload's `point` (an alert of a pattern rule: the rule
        is the source of one alert per point); a sealed payload's is not read, so its events
        count per source."""
        sql = (
            "SELECT seq, ts, source, NULL, NULL, kind, severity, payload FROM events WHERE seq IN "
            "(SELECT max(seq) FROM events WHERE kind = ? GROUP BY source, "
            "CASE WHEN typeof(payload) = 'text' AND json_valid(payload) "
            "THEN json_extract(payload, '$.point') END) ORDER BY seq DESC"
        )
        return self._snapshot(sql, (kind,))

    def _snapshot(self, sql: str, args: tuple[Any, ...]) -> tuple[int, list[tuple[Any, ...]]]:
        """(cursor, rows of `sql`) read in one transaction of the trend file."""
        if self._read is None:
            raise sqlite3.ProgrammingError("trend index is not open")
        with self._read_lock:
            self._read.execute("BEGIN")
            try:
                row = self._read.execute("SELECT value FROM meta WHERE key='cursor'").fetchone()
                rows = self._read.execute(sql, args).fetchall()
            finally:
                self._read.execute("COMMIT")
        return (int(row[0]) if row else 0), rows


def _count(conn: sqlite3.Connection) -> tuple[int, int]:
    """(buckets, events) in the index."""
    buckets = conn.execute("SELECT count(*) FROM trend.minute").fetchone()[0]
    return int(buckets), int(conn.execute("SELECT count(*) FROM trend.events").fetchone()[0])


def history_buckets(
    trend: TrendIndex, point: str, since: float, until: float, hour: bool, limit: int, scan_floor: int
) -> list[tuple[float, float, Any, Any]]:
    """Buckets of `point` between since and until, newest `limit`, oldest first: (middle ts,
    average, min, max). Readings after the follower's cursor (not rolled up yet; at most those
    after `scan_floor`, the raw scan's bound) are folded in from the journal, so the newest
    minute is there too. Runs in a worker thread."""
    lo = math.floor(max(0.0, since) / 60)  # clamped: SQLite integers stop at 64 bits
    hi = math.floor(min(until, FAR_FUTURE) / 60)
    cursor, rows = trend.read(point, lo, hi, hour)
    acc: dict[int, list[Any]] = {int(r[0]): list(r[1:]) for r in rows}
    tail = trend.journal.numeric_readings(point, max(cursor, scan_floor), lo * 60, (hi + 1) * 60)
    width = 3600 if hour else 60
    for ts, value in tail:
        key = math.floor(ts / width)
        a = acc.get(key)
        if a is None:
            acc[key] = [1, value, value, value]
        else:
            a[0] += 1
            a[1] = min(a[1], value)
            a[2] = max(a[2], value)
            a[3] += value
    keys = sorted(acc)[-limit:]
    return [(k * width + width / 2, acc[k][3] / acc[k][0], acc[k][1], acc[k][2]) for k in keys]


def newest_events(
    journal: Journal, trend: TrendIndex | None, match: EventMatch, limit: int, scan_floor: int
) -> tuple[list[tuple[Any, ...]], int, int | None]:
    """(the newest `limit` events that `match`, newest first; the journal scan's lower bound; the
    index's cursor, None without an index). Events up to the cursor come from the index, those
    after it from the journal (only seqs after `scan_floor`, the raw scan's bound), so each is
    listed once whatever the follower's progress. Rows have the journal's shape, sealed payloads
    opened. Runs in a worker thread."""
    if trend is None:
        return journal.newest_events(match, scan_floor, limit), scan_floor, None
    cursor, indexed = trend.read_events(match, limit)
    lo = max(cursor, scan_floor)
    tail = journal.newest_events(match, lo, limit)
    return (tail + indexed)[:limit], lo, cursor


def create(runtime: Runtime) -> TrendIndex:
    st = runtime.site.storage
    return TrendIndex(
        runtime.journal,
        default_path(st.path),
        keep_history=st.keep_history,
        clock=runtime.clock,
        idle_interval=IDLE_INTERVAL,
    )
