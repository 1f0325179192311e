"""The journal: the one outbound log of readings and events, with one monotonic `seq`.

One writer thread owns the write connection (WAL). The event loop only appends to an in-memory
list; the writer swaps the list out and commits it with `executemany` in one transaction per flush
(group commit), on a timer (`flush_interval`) or as soon as `flush_max_items` records wait.
`seq` is assigned by the writer in commit order and never reused, even when every row is deleted.

Readers (pull API, UI, sinks, CLI) use their own connection, so they never block the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from edge.model import QUALITY_NAMES, Event, Reading, Record
from edge.state import split_sql

log = logging.getLogger("edge.store")

BOOL_FLAG = 4  # quality column: bits 0-1 quality, bit 2 "value is a bool" (SQLite has no bool)

SCHEMA_VERSION = 1
MIGRATIONS: list[str] = [
    # v1
    """
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
    """,
]

READING_SQL = "INSERT INTO journal(seq, ts, point, value, quality) VALUES (?,?,?,?,?)"
EVENT_SQL = "INSERT INTO journal(seq, ts, point, kind, severity, payload) VALUES (?,?,?,?,?,?)"
SELECT_COLS = "seq, ts, point, value, quality, kind, severity, payload"


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


class Journal:
    """See the module docstring. Construct, `open()`, then `append()` from the event loop."""

    def __init__(
        self,
        path: str,
        *,
        durability: str = "normal",
        flush_interval: float = 0.1,
        flush_max_items: int = 5000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.durability = durability
        self.flush_interval = flush_interval
        self.flush_max_items = flush_max_items
        self.clock = clock
        self._pending: list[Record] = []
        self._ops: list[
            tuple[str, tuple[Any, ...]]
        ] = []  # cursor updates etc., committed with the next flush
        self._cond = threading.Condition()
        self._flush_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[int]]] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commit_event: asyncio.Event | None = None
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self.next_seq = 1
        self.committed_seq = 0
        self.write_errors = 0
        self.last_error = ""
        self.committed_rows = 0  # since open
        self.flushes = 0

    # ------------------------------------------------------------ lifecycle
    def open(self) -> Journal:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._w = connect(self.path)
        self._w.execute("PRAGMA journal_mode=WAL")
        self._w.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'strict' else 'NORMAL'}")
        self._migrate(self._w)
        row = self._w.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        last = int(row[0]) if row else 0
        row = self._w.execute("SELECT max(seq) FROM journal").fetchone()
        last = max(last, int(row[0] or 0))
        self.next_seq = last + 1
        self.committed_seq = last
        self._read = connect(self.path)
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
            self._commit_event = asyncio.Event()
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()
        return self

    @classmethod
    def open_readonly(cls, path: str) -> Journal:
        """A reader for tools (`edge buffer …`) while another process owns the writer."""
        j = cls(path)
        j._read = connect(path, readonly=True)
        row = j._read.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        j.committed_seq = int(row[0]) if row else 0
        j.next_seq = j.committed_seq + 1
        return j

    def _migrate(self, conn: sqlite3.Connection) -> None:
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        version = 0
        if has_meta:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"{self.path}: schema version {version} is newer than this program ({len(MIGRATIONS)}); upgrade it"
            )
        for v in range(version, len(MIGRATIONS)):
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
                conn.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        """Flush everything pending, stop the writer, close connections."""
        if self._thread is None:
            return
        with self._cond:
            self._closing = True
            self._cond.notify()
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        if self._read is not None:
            self._read.close()
        self._w.close()

    def close_sync(self) -> None:
        if self._thread is None:
            if self._read is not None:  # a read-only journal
                self._read.close()
                self._read = None
            return
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        self._thread = None
        if self._read is not None:
            self._read.close()
        self._w.close()

    # ------------------------------------------------------------ writing (event loop side)
    def append(self, records: list[Record]) -> None:
        """Queue records for the next group commit. Never blocks."""
        pending = self._pending
        pending.extend(records)
        if len(pending) >= self.flush_max_items:
            with self._cond:
                self._cond.notify()

    async def flush(self) -> int:
        """Commit everything appended so far; returns the highest committed seq."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        with self._cond:
            if self._thread is None:
                raise JournalClosed("journal is closed")
            self._flush_waiters.append((loop, fut))
            self._cond.notify()
        return await fut

    async def set_cursor(self, name: str, seq: int, kind: str = "sink") -> None:
        """Move a cursor durably (committed before this returns)."""
        with self._cond:
            self._ops.append(
                (
                    "INSERT INTO cursors(name, kind, seq, updated) VALUES(?,?,?,?) "
                    "ON CONFLICT(name) DO UPDATE SET seq=excluded.seq, updated=excluded.updated",
                    (name, kind, int(seq), self.clock()),
                )
            )
        await self.flush()

    async def register_cursor(self, name: str, kind: str, start: int = 0) -> int:
        """Create a cursor if it does not exist; returns its position."""
        current = self.get_cursor(name)
        if current is not None:
            return current
        with self._cond:
            self._ops.append(
                (
                    "INSERT OR IGNORE INTO cursors(name, kind, seq, updated) VALUES(?,?,?,?)",
                    (name, kind, int(start), self.clock()),
                )
            )
        await self.flush()
        return self.get_cursor(name) or 0

    # ------------------------------------------------------------ writer thread
    def _writer(self) -> None:
        while True:
            with self._cond:
                if not (self._closing or self._flush_waiters or len(self._pending) >= self.flush_max_items):
                    self._cond.wait(self.flush_interval)
                batch, self._pending = self._pending, []
                ops, self._ops = self._ops, []
                waiters, self._flush_waiters = self._flush_waiters, []
                closing = self._closing
            if batch or ops:
                self._commit(batch, ops)
            for loop, fut in waiters:
                loop.call_soon_threadsafe(_resolve, fut, self.committed_seq)
            if closing:
                return

    def _commit(self, batch: list[Record], ops: list[tuple[str, tuple[Any, ...]]]) -> None:
        seq = self.next_seq
        readings: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        for rec in batch:
            if type(rec) is Reading:
                v = rec[2]
                readings.append(
                    (seq, rec[0], rec[1], v, rec[3] | BOOL_FLAG if v is True or v is False else rec[3])
                )
            else:
                assert isinstance(rec, Event)
                events.append(
                    (
                        seq,
                        rec.ts,
                        rec.source,
                        rec.kind,
                        str(rec.severity),
                        orjson.dumps(rec.payload, default=str).decode(),
                    )
                )
            seq += 1
        w = self._w
        try:
            w.execute("BEGIN")
            if readings:
                w.executemany(READING_SQL, readings)
            if events:
                w.executemany(EVENT_SQL, events)
            for sql, args in ops:
                w.execute(sql, args)
            if batch:
                w.execute(
                    "INSERT INTO meta(key, value) VALUES('last_seq', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (seq - 1,),
                )
            w.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                w.execute("ROLLBACK")
            self.write_errors += 1
            self.last_error = str(exc)
            log.error("journal commit failed (%d records kept for retry): %s", len(batch), exc)
            with self._cond:  # keep them, in order, ahead of newer records
                self._pending[:0] = batch
                self._ops[:0] = ops
            time.sleep(min(1.0, self.flush_interval * 5))
            return
        self.next_seq = seq
        self.committed_rows += len(batch)
        self.flushes += 1
        if batch:
            self.committed_seq = seq - 1
            if self._loop is not None and self._commit_event is not None:
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._commit_event.set)

    # ------------------------------------------------------------ reading
    def query(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        assert self._read is not None, "journal is not open"
        with self._read_lock:
            return self._read.execute(sql, tuple(args)).fetchall()

    def read_rows(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Raw rows with seq > after, in seq order (see `row_to_record`)."""
        return self.query(
            f"SELECT {SELECT_COLS} FROM journal WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )

    def read(self, after: int, limit: int) -> list[dict[str, Any]]:
        return [row_to_record(r) for r in self.read_rows(after, limit)]

    def tail(self, n: int) -> list[dict[str, Any]]:
        rows = self.query(f"SELECT {SELECT_COLS} FROM journal ORDER BY seq DESC LIMIT ?", (n,))
        return [row_to_record(r) for r in reversed(rows)]

    def get_cursor(self, name: str) -> int | None:
        rows = self.query("SELECT seq FROM cursors WHERE name=?", (name,))
        return int(rows[0][0]) if rows else None

    def cursors(self) -> dict[str, tuple[str, int, float]]:
        return {
            r[0]: (r[1], int(r[2]), float(r[3]))
            for r in self.query("SELECT name, kind, seq, updated FROM cursors")
        }

    async def wait_committed(self, after: int, timeout: float) -> int:
        """Wait until a record with seq > after is committed, or the timeout; returns committed_seq."""
        if self.committed_seq > after or timeout <= 0 or self._commit_event is None:
            return self.committed_seq
        deadline = time.monotonic() + timeout
        while self.committed_seq <= after:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._commit_event.clear()
            if self.committed_seq > after:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._commit_event.wait()
        return self.committed_seq


def _resolve(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)
