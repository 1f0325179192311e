"""What the journal's filesystem can take, and the writer's state as other processes see it.

The journal leaves `disk_reserve` bytes free on its filesystem. A transaction costs the disk twice
before its WAL frames are given back: the frames themselves, then the pages the checkpoint copies
into the database file (nothing when they land on free pages of the file). `Room` estimates that
cost from the measured bytes per row, so the writer sizes each step to what is free beyond the
reserve instead of finding out from `SQLITE_FULL` — a failure that may come only after the WAL
has already taken the last free byte.

The writer's state (disk full, recovering, failing, backlog) lives in memory; `edge buffer stats`
runs in another process. `StatusFile` is a small fixed-size file beside the journal, written in
place: once it exists, rewriting it takes no new blocks, so the writer can still say "disk full"
on a filesystem with no free byte left (a copy-on-write filesystem may still refuse it; the
reader then also compares free space with the reserve itself).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

WAL_FRAME_HEADER = 24
# b-tree interior pages, counters, meta, cursors, a freelist trunk: pages a step writes whatever
# its size; an overestimate only makes the first step a little smaller
STEP_FIXED_PAGES = 16
# a leaf page is rarely full and events are larger than readings: what the average row misses
WAL_SLACK = 1.5
# the WAL index (-shm) grows in 32 KiB chunks, one per 4096 frames: a step may start one
SHM_CHUNK = 32 * 1024
# pages a small transaction of the writer's own writes: a cursor's row, the counters, the meta
# row, a few events' leaf and interior pages, a page split, the header page. It starts no -shm
# chunk: the writer holding for space has just truncated the WAL (one chunk serves 4096 frames)
SMALL_STEP_PAGES = 8
WAL_HEADER = 32
STATUS_SUFFIX = "-status"
STATUS_SIZE = 4096


def free_bytes(path: str) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def db_bytes(path: str) -> int:
    """What a SQLite database in WAL mode holds on disk: its file and its WAL (`Journal.add_own_space`
    for the stores beside the journal)."""
    return file_size(path) + file_size(path + "-wal")


@dataclass(frozen=True)
class Room:
    """The space one write step may use: free bytes beyond the reserve, and the file's shape."""

    free: int  # bytes free on the filesystem now
    reserve: int
    page_size: int
    pages: int  # the database file's pages...
    free_pages: int  # ...of which free (reused before the file grows)
    row_bytes: float  # measured bytes per stored row
    file_bytes: int  # the database file on disk: pages beyond it are still in the WAL only

    @property
    def used(self) -> int:
        return (self.pages - self.free_pages) * self.page_size

    @property
    def spare(self) -> int:
        """Free bytes beyond the reserve and beyond what the next checkpoint adds to the file for
        pages that are in the WAL only (a reader's snapshot may have kept it from copying them)."""
        backfill = max(0, self.pages * self.page_size - self.file_bytes)
        return self.free - self.reserve - backfill

    def wal_bytes(self, rows: int) -> int:
        """WAL bytes a transaction inserting `rows` rows adds before a checkpoint gives them back."""
        frame = self.page_size + WAL_FRAME_HEADER
        pages = rows * self.row_bytes * WAL_SLACK / self.page_size + STEP_FIXED_PAGES
        return int(pages * frame) + SHM_CHUNK

    def data_limit(self, headroom_rows: int) -> int:
        """Bytes the journal's data may occupy: the file as allocated plus what is spare once a
        step of `headroom_rows` rows has its WAL frames (the full policy deletes beyond it).
        The checkpoint copies those pages into the file while the WAL still holds them: what the
        file grows by is paid for once as WAL frames and once as file, both out of `spare`."""
        return max(0, self.pages * self.page_size + self.spare - self.wal_bytes(headroom_rows))

    def allowed(self, headroom_rows: int) -> int:
        """`data_limit`, but never more than `headroom_rows` rows below the file as allocated.
        SQLite does not give a deleted row's page back to the filesystem: deleting only lets newer
        rows reuse the pages. So the full policy deletes at most what the next steps reuse (a
        step inserts before it deletes: without a step's free pages the file would grow at every
        step), never the whole journal for a disk that deleting cannot free."""
        floor = self.pages * self.page_size - int(headroom_rows * self.row_bytes)
        return max(self.data_limit(headroom_rows), floor)

    def limited(self, headroom_rows: int) -> bool:
        """A full step of `headroom_rows` rows would not fit under `data_limit`."""
        return self.used + headroom_rows * self.row_bytes > self.data_limit(headroom_rows)

    def deleted_rows(self, rows: int, headroom_rows: int, rotate: bool = True) -> int:
        """Rows the full policy deletes to take `rows` more under `allowed`: only as many as the
        new rows need beyond the file's free pages and its allowed growth; none without `rotate`."""
        if not rotate:
            return 0
        over = self.used + rows * self.row_bytes - self.allowed(headroom_rows)
        return max(0, math.ceil(over / self.row_bytes))

    def step_wal(self, rows: int, headroom_rows: int, rotate: bool = True) -> int:
        """WAL bytes of a step inserting `rows` rows, the deletions that make room for them
        included: with secure_delete (on in Debian's SQLite) a freed page is written, zeroed."""
        return self.wal_bytes(rows + self.deleted_rows(rows, headroom_rows, rotate))

    def rows_that_fit(self, most: int, rotate: bool = True) -> int:
        """How many rows (at most `most`, a full step) a step may insert with its WAL frames kept
        out of the reserve; 0 when not even an empty step fits. Without `rotate` (no committed
        row may be deleted for space) also no more than the file's free pages and its allowed
        growth take."""
        spare = self.spare
        room_rows = most
        if not rotate:
            # its free pages, and the growth the disk allows
            grows_to = max(self.data_limit(most), self.pages * self.page_size)
            room_rows = max(0, int((grows_to - self.used) / self.row_bytes))
            room_rows = min(most, room_rows)
        if self.step_wal(room_rows, most, rotate) <= spare:  # the common case: a full step fits
            return room_rows
        if self.step_wal(0, most, rotate) > spare:
            return 0
        lo, hi = 0, room_rows
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.step_wal(mid, most, rotate) <= spare:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def small_fits(self, rows: int) -> bool:
        """A small step (`rows` events, cursor moves, counters; no deletion) fits beyond the reserve:
        its WAL frames and what its rows add to the file. Sized apart from `wal_bytes`, whose
        fixed pages and -shm chunk are there for a full step: with only those the writer, once
        holding, could not even move a sink's cursor over what it has delivered."""
        pages = math.ceil(rows * self.row_bytes * WAL_SLACK / self.page_size) + SMALL_STEP_PAGES
        frames = pages * (self.page_size + WAL_FRAME_HEADER) + WAL_HEADER
        return frames + int(rows * self.row_bytes) <= self.spare


def measure(conn: Any, path: str, reserve: int, rows: int) -> Room | None:
    """The room for the next step on the write connection, or None when free space is unknown."""
    free = free_bytes(path)
    if free is None:
        return None
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
    used = (pages - free_pages) * page_size
    row_bytes = max(32.0, used / rows) if rows >= 1000 else 64.0
    return Room(free, reserve, page_size, pages, free_pages, row_bytes, file_size(path))


class StatusFile:
    """The writer's state, rewritten in place in a file of fixed size beside the journal."""

    def __init__(self, journal_path: str) -> None:
        self.path = journal_path + STATUS_SUFFIX
        self._fd: int | None = None
        self._last = b""

    def open(self) -> str:
        """Create (or reuse) the file; returns an error to log, or '' when it is writable."""
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if os.fstat(self._fd).st_size < STATUS_SIZE:
                os.pwrite(self._fd, b" " * STATUS_SIZE, 0)
        except OSError as exc:
            self.close()
            return f"{self.path}: {exc.strerror or exc}"
        return ""

    def write(self, state: dict[str, Any]) -> None:
        if self._fd is None:
            return
        key = orjson.dumps(state)
        if key == self._last:  # unchanged: no write at all in steady operation
            return
        body = orjson.dumps({**state, "pid": os.getpid(), "updated": time.time()})
        if len(body) > STATUS_SIZE:
            return
        with contextlib.suppress(OSError):  # a status that cannot be written must not stop the writer
            os.pwrite(self._fd, body.ljust(STATUS_SIZE), 0)
            self._last = key

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def read_status(journal_path: str) -> dict[str, Any] | None:
    """The state a running writer published, or None when no writer is running (stopped, killed)."""
    try:
        with open(journal_path + STATUS_SUFFIX, "rb") as f:
            state = orjson.loads(f.read(STATUS_SIZE).strip() or b"null")
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(state, dict) or not state.get("open") or not _alive(state.get("pid")):
        return None
    return state


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the gateway runs as another user: it exists
        return True
    return True
