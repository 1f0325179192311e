"""The journal: the one outbound log of readings and events, with one monotonic `seq`.

One writer thread owns the write connection (WAL). The event loop only appends to an in-memory
list; the writer swaps the list out and commits it with multi-row INSERTs (`edge.store.rows.
insert_records`) in one transaction per flush (group commit), on a timer (`flush_interval`) or as
soon as `flush_max_items` records wait. A producer that must not outrun the writer awaits
`drained` (the writer has taken the work), not `flush` (it has committed it): the writer and the
event loop share the GIL, and a producer that waits for commits takes turns with the writer
instead of running while SQLite works without the GIL.
`seq` is assigned by the writer in commit order and never reused, even when every row is deleted.
A commit that finds its seqs taken (another process appended rows to the file: `edge run` refuses
a second gateway on a site, but a tool may still write) numbers its records anew above the file's
highest seq, and says so in the log and in a `journal_seq_conflict` event.

Between flushes the same thread applies retention in small chunks, and inside each flush it
applies the byte cap (`max_bytes`, `when_full`); see `edge.store.retention`. A failed commit
(disk full, I/O error) never loses committed rows: the batch is kept and retried, or refused under
`drop_newest`, and every refused or deleted-unsent record is counted (persisted counters) and
reported as one `buffer_drop` event per burst (a burst for lack of disk space or memory is
journaled at its start too, so a crash in the middle of it leaves a trace).

A transaction inserts at most `flush_max_items` records, and no more than the free space beyond
`disk_reserve` can take (WAL frames, then the file's growth at the checkpoint; see
`edge.store.space`). After the disk was full the backlog waiting in memory goes in such bounded
steps, each followed by a WAL checkpoint that gives the frames back, so recovery never writes into
the reserve; when not even a step fits, the writer holds (drop per policy, counted) and says so,
still commits its own small transactions (cursor moves, counters, drop events) while they fit,
and asks the stores beside it on the disk for their space (`add_space_reclaimer`: their WALs).
A close commits the backlog step after step within `close_budget`; what is left is counted.
Committed rows are deleted for disk space only for newer rows that take their pages, and not at
all when another program took the space (`_disk_share`; docs/storage.md).
`disk_full`, `recovering` and `failing` are published for other processes (`edge buffer stats`).

Any exception in a commit, not only a SQLite error (a record that cannot be sealed, say), is
handled as a failed commit: counted in `write_errors`, logged once per distinct error, the batch
kept and retried, and `failing` set until a commit succeeds. A batch that fails twice alike with
a data error (`unwritable`: a payload nested deeper than orjson writes, a reading whose value is
a list) is committed in halves, recursively, in order (and at its first failure when its error
is the one the last split found: a point giving such a value at every poll costs neither the
retry's wait nor a log line each time); a record that fails alone is refused,
counted in `dropped_unwritable` and reported as a `buffer_drop` event of reason `unwritable`, so
one record never stops the site's journal. Should the writer thread end all the same, the
journal says so (`writer_problem`, `failing`), and what is appended from then on is counted as
dropped instead of waiting for a writer that is gone.

Readers (pull API, UI, sinks, CLI) use their own connection, so they never block the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import orjson

from edge import paths
from edge.clock import ClockSample, boottime, forward_jump
from edge.model import PRIVACY_RANK, Event, Privacy, Reading, Record, Severity, event_privacy
from edge.store import retention, space
from edge.store.reader import READER_CACHE_KIB, JournalQueries
from edge.store.rows import (
    ADD_COUNTER_SQL,
    AUTO_READING_SQL,
    BOOL_FLAG,
    EVENT_SQL,
    INTS_AS_FLOATS,
    READING_SQL,
    SELECT_COLS,
    JournalClosed,
    RecordClasses,
    Sealer,
    checkpoint,
    connect,
    insert_records,
    is_disk_full,
    register,
    row_to_record,
    unregister,
)
from edge.store.schema import COUNTERS, MIGRATIONS, SCHEMA_VERSION, ensure_journal_id, journal_id, migrate

if TYPE_CHECKING:
    from edge.store.blobs import BlobStore

log = logging.getLogger("edge.store")

TIGHT_STEPS = 8  # closer to the reserve than this many full steps' WAL: checkpoint after every step
# a disk-limited episode ends only with this many full steps' WAL free beyond the reserve
SPACE_BACK_STEPS = 2
# the disk-full state ends this long after its last hold or drop, once the backlog is in: a journal
# at the disk's limit would otherwise leave and enter it (and say so) at every other step
SPACE_BACK_S = 5.0
# bursts whose start is journaled as soon as it can be, not only their end: they happen while the
# disk is full or the writer is behind, when a crash would lose the records held in memory
ANNOUNCED_BURSTS = ("disk_full", "queue_overflow")
# a close commits the backlog in as many steps as it needs within this time: the service's stop
# timeout (TimeoutStopSec=20s in deploy/systemd) also covers the web, the drivers and the components
CLOSE_BUDGET_S = 10.0
# while the journal holds for space, the stores beside it (add_space_reclaimer) are asked this often
RECLAIM_INTERVAL_S = 1.0
PUBLISH_INTERVAL_S = 0.2  # the backlog figure a recovering writer publishes, at most this often
BLOB_INTERVAL_S = 60.0  # snapshot files are checked for age this often (a directory scan)
EXPIRER_INTERVAL_S = 60.0  # stores beside the journal (add_expirer) expire this often
#: `fn(now, retention_s)` of a store beside the journal: deletes what is past its retention by the
#: trusted wall clock `now` and returns the events that say so (journaled with the next commit)
Expirer = Callable[[float, Mapping[int, "float | None"]], list[Event]]
RANK_NAMES = {rank: str(cls) for cls, rank in PRIVACY_RANK.items()}
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26
DROPPED_UNWRITABLE = "dropped_unwritable"  # records refused as no commit can take them (persisted)
ERROR_TEXT_MAX = 200  # characters of an error's text in a buffer_drop event
TOLD_ERRORS_MAX = 100  # distinct error texts remembered as logged (then forgotten and said again)
# A commit that fails with one of these (their exact types: a subclass, such as the key store's
# WrongMasterKey, is a component's state, not a record's) fails for what a record holds: the
# same records failing twice are split to find it (`Journal._bisect`). A full disk, an I/O error,
# a busy or locked file are not among them and keep the retry.
DATA_ERRORS = frozenset(
    {
        TypeError,
        ValueError,
        OverflowError,
        orjson.JSONEncodeError,
        sqlite3.ProgrammingError,
        sqlite3.InterfaceError,
        sqlite3.IntegrityError,
    }
)
# IntegrityErrors of the journal's own checks, not of a record (`edge.store.rows.insert_records`)
OWN_CHECKS = ("journal.seq", "seq numbering", "event rows missing")
DIGITS = re.compile(r"\d+")

__all__ = [  # re-exported: other modules import these from here
    "AUTO_READING_SQL",
    "BOOL_FLAG",
    "EVENT_SQL",
    "MIGRATIONS",
    "READING_SQL",
    "SCHEMA_VERSION",
    "SELECT_COLS",
    "Journal",
    "JournalClosed",
    "JournalUnreadable",
    "connect",
    "row_to_record",
]

COUNTER_SQL = "UPDATE counters SET value = value + ? WHERE name = ?"
LAST_SEQ_SQL = (
    "INSERT INTO meta(key, value) VALUES('last_seq', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
)
SET_META_SQL = "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
#: set in the first transaction that seals records written in clear, deleted once the trend index
#: (which copied them in clear) is gone: a crash in between leaves it, and the next start drops
#: the index although nothing is left to seal
TREND_STALE_META = "trend_index_stale"
PAUSE_EVENTS_READ = "retention_pause_events_read"  # the journal's events were read for a pause, once
PAUSE_EVENTS_ROWS = 2_000_000  # how far back from the journal's end that one read goes, at most
SWEEP_INTERVAL_S = 60.0  # the retention's look-ahead past rows stamped young: this often at most
# a pause of the retention's clock guard, kept across restarts: {"reason", "landed", "step"} (JSON)
PAUSE_META = "retention_paused"


# records sealed at rest still in clear: personal and sensitive events whose payload is text, and
# readings whose value is not sealed (every sensitive one, a personal point's strings)
UNSEALED_SQL = (
    "SELECT seq, ts, point, value, kind, payload FROM journal WHERE seq > ? AND privacy >= 1 AND "
    "((kind IS NOT NULL AND typeof(payload) = 'text') OR (kind IS NULL AND (typeof(value) = 'text' "
    "OR (privacy = 2 AND typeof(value) <> 'blob')))) ORDER BY seq LIMIT ?"
)


class TrustView(Protocol):
    """What retention asks of the clock's trust (`edge.clock.ClockTrust`): trusted or not, whether
    the kernel clock is synchronised, and the (wall, monotonic) sample of its last check, so a
    trust older than a jump is not believed."""

    @property
    def trusted(self) -> bool | None: ...

    @property
    def last_sample(self) -> ClockSample | None: ...

    @property
    def synchronised(self) -> bool | None: ...


#: the writer's page cache, in KiB. It appends at the end of the file and retention deletes at its
#: start: a page is written once and seldom read again, and SQLite's default (2 MB) filled with
#: such pages, a quarter MB a minute on a site of 10 meters at 1 s, held as long as the gateway
#: runs. A step's dirty pages beyond the cap go to the WAL before its commit, as at any size.
WRITER_CACHE_KIB = 512


def retention_failing(failures: int, error: str) -> str:
    """What `Journal.retention_problem` says, also for the state a running writer published."""
    return (
        f"journal retention failing ({failures} failed steps since the start): {error}; records past "
        "their retention are not deleted"
    )


class JournalUnreadable(RuntimeError):
    """The journal file cannot be opened as a SQLite database, or a start cannot read the records it
    needs from it (a damaged page); the message names it and says what to do."""


def unreadable(path: str, exc: sqlite3.Error) -> JournalUnreadable:
    if damaged(exc):
        return JournalUnreadable(
            f"journal {path} is not a SQLite database or is damaged ({exc}): restore it from a backup "
            "or move it aside (a new journal is created on the next start); nothing was changed"
        )
    return JournalUnreadable(f"journal {path} cannot be opened ({exc}); nothing was changed")


def damaged(exc: sqlite3.Error) -> bool:
    """The error says a page of the database is damaged (or the file is not one)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (SQLITE_NOTADB, SQLITE_CORRUPT) or "not a database" in str(exc) or "malformed" in str(exc)


class Journal(JournalQueries):
    """See the module docstring. Construct, `open()`, then `append()` from the event loop."""

    def __init__(
        self,
        path: str,
        *,
        durability: str = "normal",
        flush_interval: float = 0.1,
        flush_max_items: int = 5000,
        clock: Callable[[], float] = time.time,
        max_bytes: int | None = 4 * 1024**3,
        when_full: str = "drop_oldest",
        keep_history: float | None = 7 * 86400.0,
        retention_interval: float = 5.0,
        sweep_interval: float = SWEEP_INTERVAL_S,
        retention_chunk: int = 2000,
        max_pending: int | None = None,
        disk_reserve: int | None = 32 * 1024**2,
        wal_autocheckpoint: int = 1000,
        source: str = "journal",
        retention_s: Mapping[int, float | None] | None = None,
        classes: RecordClasses | None = None,
        clock_sample: Callable[[], ClockSample] | None = None,
        clock_trust: TrustView | None = None,
        clock_tolerance: float = 2.0,
        blobs: BlobStore | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        if durability not in ("normal", "strict"):
            raise ValueError(f"durability {durability!r}: expected 'normal' or 'strict'")
        if when_full not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"when_full {when_full!r}: expected 'drop_oldest' or 'drop_newest'")
        self.path = path
        self.durability = durability
        self.flush_interval = flush_interval
        self.flush_max_items = flush_max_items
        self.clock = clock
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.keep_history = keep_history
        self.retention_interval = retention_interval
        self.retention_chunk = retention_chunk
        # seconds each privacy class (PRIVACY_RANK) is kept; public defaults to keep_history, and so
        # does a class the caller leaves out (None: kept until the byte cap)
        kept: dict[int, float | None] = dict.fromkeys(PRIVACY_RANK.values(), keep_history)
        kept.update(retention_s or {})
        self.retention_s = kept
        #: cursor name -> PRIVACY_RANK of the highest class that sink or pull consumer receives: a
        #: personal or sensitive record counts as expired before delivery only behind a recipient
        #: it is owed to (retention.lowest_owed); None: every cursor is taken to receive every class.
        #: Swapped whole by the runtime, read by the writer thread.
        self.receives: Mapping[str, int] | None = None
        self.classes = classes  # the class of each record at ingest (the hub, in the runtime)
        # (wall, monotonic) read together: a retention pass that sees the wall clock run ahead of
        # the monotonic one deletes nothing by age until `clock_trust` says the clock is trusted
        self._clock_sample = clock_sample or (lambda: ClockSample(self.clock(), boottime()))
        self.clock_trust = clock_trust
        self.clock_tolerance = clock_tolerance
        self.retention_paused: str | None = None  # why age-based deletion is on hold, for people
        #: the journal's line of descent (`meta.journal_id`): given at the first writable open,
        #: read by a read-only one (None there for a journal no writer of this release opened)
        self.journal_id: str | None = None
        # retention steps that failed since the start, and the last one's error while they still
        # fail: records past their retention are then kept (health, /healthz, /metrics say so)
        self.retention_failures = 0
        self.retention_error: str | None = None
        self._paused_at: float | None = None  # monotonic time of the (latest) jump
        self._paused_since: float | None = None  # monotonic time the pause began
        self._last_pass: ClockSample | None = None
        # (wall time where the jump landed, its step): a pause kept from before this start, which only
        # a synchronised clock or a wall clock set back behind the jump ends (see _clock_allows)
        self._kept_pause: tuple[float, float] | None = None
        self._pause_step = 0.0  # the steps of the jumps of this pause, added up
        self._retention_swept: dict[int, int] = {}  # class -> seq the look-ahead swept up to
        self._next_sweep = 0.0  # monotonic time of the next look-ahead (retention.expire_class)
        self.sweep_interval = sweep_interval
        self._retention_from = dict.fromkeys(PRIVACY_RANK.values(), 0)  # per class: walked up to
        # per private class, the highest seq this writer gave a row of it, and the last seq before
        # it started: the class's walk over rows after both finds none of its rows, so it is
        # skipped (it scanned every row a site journals, per class, at every retention pass)
        self._private_upto: dict[int, int] = {}
        self._opened_seq = 0
        self._law: dict[int, retention.LawExpiry] = {}  # expired before delivery, not reported yet
        self.blobs = blobs  # snapshot files, kept no longer than their class (personal)
        # seals sensitive payloads and values before they reach SQLite (see attach_sealer)
        self.sealer: Sealer | None = None
        self._secure_delete = False  # the write connection zeroes what it deletes (set with a sealer)
        if sealer is not None:
            self.attach_sealer(sealer)
        self._next_blobs = 0.0
        # stores beside the journal that expire by its retention and its clock guard (add_expirer)
        self._expirers: list[Expirer] = []
        # stores beside the journal that give their space back when it holds for space
        self._reclaimers: list[Callable[[], object]] = []
        self._reclaimed = float("-inf")  # monotonic time they were last asked
        # bytes the gateway's other stores on the journal's filesystem hold (add_own_space)
        self._own_space: list[Callable[[], int]] = []
        self.expirer_interval = EXPIRER_INTERVAL_S
        # monotonic time of the last run: compared with the interval at each pass, so a changed
        # interval takes effect at once
        self._expirers_ran: float | None = None
        # records held in memory while SQLite fails; past this the full policy applies in memory
        self.max_pending = max_pending or max(200_000, 20 * flush_max_items)
        # free space the journal leaves on its filesystem (for the WAL and checkpoints): beyond it
        # the disk counts as full and `when_full` applies *before* SQLite fails with SQLITE_FULL
        # (None: no free-space check, SQLITE_FULL is the only signal)
        self.disk_reserve = disk_reserve
        self.wal_autocheckpoint = wal_autocheckpoint
        self.disk_low = False  # the last flush was limited by free disk space, not max_bytes
        # a full step does not fit on the disk now (`space.Room.limited`)...
        self._disk_limited = False
        # ...and the journal's own growth took it there: drop_oldest replaces the oldest rows
        # with newer ones within the space the journal has. Space another program takes is not
        # made up by deleting committed rows (see _disk_share)
        self._rotating = False
        self._disk_total: int | None = None  # free space plus the journal's files, at the last step
        self.source = source  # the `source` of buffer_drop events
        self._pending: list[Record] = []
        self._ops: list[tuple[str, tuple[Any, ...]]] = []  # cursor updates, committed with the next flush
        self._cond = threading.Condition(threading.Lock())
        # flush() waiters with the count of records appended before they asked: a step commits at
        # most flush_max_items, and a waiter must not wait for records appended after it
        self._flush_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[int], int]] = []
        # drained() waiters with their mark: answered once no more than that many records wait
        self._room_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[int], int]] = []
        self._appended = 0  # records ever appended
        self._taken = 0  # ...of which taken from the head of the queue (a step, or dropped)
        self._thread: threading.Thread | None = None
        self._closing = False
        # seconds a close may spend committing the backlog waiting in memory (step after step);
        # what still waits then is counted as dropped (see _give_up)
        self.close_budget = CLOSE_BUDGET_S
        self._close_by = 0.0  # monotonic time the close must be done by
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commit_event: asyncio.Event | None = None
        # wait_committed() calls waiting: the writer wakes the event loop after a commit only for
        # them (a wake-up per commit costs the writer the GIL while the loop runs)
        self._commit_waiting = 0
        self._page_size = 0  # of the write connection's file, read once
        self._read: sqlite3.Connection | None = None
        self._w: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self.next_seq = 1
        self.committed_seq = 0
        self.seq_conflicts = 0  # commits that found their seqs taken by another writer, since open
        self.last_error = ""
        self.failing = False  # the last commit attempt failed (cleared by the next success)
        self.writer_stopped: str | None = None  # why the writer thread ended while the journal was open
        self.disk_full = False  # refusing or dropping for lack of space, or writing the backlog back
        self.recovering = False  # space is back and the backlog goes in bounded steps
        self.free_bytes: int | None = None  # on the journal's filesystem, at the last step
        self.min_free_bytes: int | None = None  # lowest free space a step left (checkpoint included)
        self.peak_wal_bytes = 0  # largest WAL a step left before its checkpoint
        self.last_recovery: dict[str, Any] | None = None  # the last return from a full disk
        self._recovery: dict[str, Any] | None = None
        self._last_full = 0.0  # monotonic time of the last hold or drop for lack of space
        self._status = space.StatusFile(path)
        self._tight = False
        self._step_room: space.Room | None = None  # measured before the step, used by its commit
        self._published = 0.0
        self._published_flags: tuple[bool, bool, bool, str | None, str | None] = (
            False,
            False,
            False,
            None,
            None,
        )
        self.committed_rows = 0  # since open
        self.flushes = 0  # transactions that inserted records, since open
        self.counters: dict[str, int] = dict.fromkeys((*COUNTERS, DROPPED_UNWRITABLE, INTS_AS_FLOATS), 0)
        self._unsaved: dict[str, int] = {}  # counter increments not yet persisted
        self._overflow: list[Record] = []  # refused in memory by append(), accounted by the writer
        self._bursts: dict[str, retention.DropBurst] = {}
        self._announced: set[str] = set()  # bursts whose start event is out (ANNOUNCED_BURSTS)
        self._ready_events: list[Event] = []  # closed bursts waiting to be journaled
        # the first record of a commit that failed with a data error: failing again, split it
        self._suspect: Record | None = None
        self._bisecting = False
        # the error text of the last split, its numbers left out: a batch failing with it is split
        # at once
        self._bisected: str | None = None
        self._told_unwritable: set[str] = set()  # error texts of refused records already logged
        self._rate: deque[tuple[float, int, int]] = deque()  # (monotonic, committed, expired)
        self._expired_total = 0
        self._next_retention = 0.0

    # ------------------------------------------------------------ lifecycle
    def open(self) -> Journal:
        """Open (or create) the file and start the writer. Raises JournalUnreadable, naming the
        file, when it is not a SQLite database."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        w = self._w = connect(self.path)
        try:
            w.execute("PRAGMA journal_mode=WAL")
            w.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            w.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'strict' else 'NORMAL'}")
            w.execute(f"PRAGMA wal_autocheckpoint={int(self.wal_autocheckpoint)}")
            # after a checkpoint, give a WAL grown by a burst back to the filesystem
            w.execute(f"PRAGMA journal_size_limit={int(self.wal_autocheckpoint) * 4096 * 2}")
            migrate(w, self.path)
            self.journal_id = ensure_journal_id(w)
            self._load_state(w)
        except sqlite3.DatabaseError as exc:
            w.close()
            self._w = None
            raise unreadable(self.path, exc) from None
        self._read = connect(self.path)
        # the UI's and the CLI's reads (tails, events, history) page through records read once:
        # capped as every reader of the journal is, not SQLite's default 2 MB for as long as it runs
        self._read.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
        problem = self._status.open()
        if problem:
            log.warning("journal: cannot write its status for other processes: %s", problem)
        self._publish(force=True)
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
            self._commit_event = asyncio.Event()
        self._next_retention = time.monotonic() + min(1.0, self.retention_interval)
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()
        return self

    @classmethod
    def open_readonly(cls, path: str) -> Journal:
        """A reader on an existing file (CLI, tools): queries only, no writer, no migration."""
        j = cls(path)
        j._read = connect(path, readonly=True)
        try:
            j._load_state(j._read)
        except sqlite3.DatabaseError as exc:
            j._read.close()
            j._read = None
            raise unreadable(path, exc) from None
        return j

    def _load_state(self, conn: sqlite3.Connection) -> None:
        self._load_pause(conn)
        self.journal_id = journal_id(conn)
        row = conn.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        last = int(row[0]) if row else 0
        last = max(last, int(conn.execute("SELECT max(seq) FROM journal").fetchone()[0] or 0))
        self.next_seq = last + 1
        self.committed_seq = self._opened_seq = last
        for name, value in conn.execute("SELECT name, value FROM counters"):
            self.counters[name] = int(value)

    @property
    def near_reserve(self) -> bool:
        """The last step found the disk within TIGHT_STEPS full steps of the reserve: the writer
        truncates its WAL after every step, and the stores beside it on the disk should too."""
        return self._tight

    @property
    def writing(self) -> bool:
        """This object runs the writer (opened with `open`, not `open_readonly`, and not closed)."""
        return self._w is not None

    @property
    def write_errors(self) -> int:
        return self.counters["write_errors"]

    @property
    def writer_problem(self) -> str | None:
        """Why this journal is not committing what is appended, for health checks: its writer
        thread ended, or its commits fail (disk full included); None while the writer runs and its
        last commit succeeded, and for a journal without a writer (`open_readonly`, closed)."""
        thread = self._thread
        if self._w is None or thread is None:
            return None
        if self.writer_stopped is not None or not thread.is_alive():
            return f"journal writer stopped: {self.writer_stopped or self.last_error or 'cause unknown'}"
        if self.failing:
            return f"journal commits failing: {self.last_error or 'cause unknown'}"
        return None

    @property
    def retention_problem(self) -> str | None:
        """Why records past their retention are not being deleted, for health checks: the last
        retention step failed (a damaged page, an I/O error); None while it succeeds."""
        if self.retention_error is None:
            return None
        return retention_failing(self.retention_failures, self.retention_error)

    async def close(self) -> None:
        """Flush everything pending, stop the writer, close connections."""
        thread = self._stop_writer()
        if thread is not None:
            await asyncio.to_thread(thread.join)
        self._close_connections()

    def close_sync(self) -> None:
        thread = self._stop_writer()
        if thread is not None:
            thread.join()
        self._close_connections()

    def _stop_writer(self) -> threading.Thread | None:
        thread, self._thread = self._thread, None
        if thread is not None:
            with self._cond:
                self._close_by = time.monotonic() + self.close_budget
                self._closing = True
                self._cond.notify()
        return thread

    def attach_sealer(self, sealer: Sealer) -> None:
        """From now on sensitive payloads and sensitive points' values are sealed with `sealer`
        before they are written, and every reader of this journal (and of its trend index) in
        this process opens them. The journal closes it when it closes."""
        self.sealer = sealer
        register(self.path, sealer)
        register(paths.trend_path(self.path), sealer)

    async def seal_existing(self, chunk: int = 500) -> int:
        """Seal the sensitive records written in clear before a sealer was attached (an older
        version, or a site without a master key), `chunk` rows per transaction, on a connection
        of its own beside the writer; returns how many were sealed (counted in `sealed_existing`)."""
        if self.sealer is None:
            return 0
        return await asyncio.to_thread(self._seal_existing, self.sealer, chunk)

    def _seal_existing(self, sealer: Sealer, chunk: int) -> int:
        conn = connect(self.path)
        try:
            # the rewritten pages' old content is zeroed, and the WAL that held it is truncated
            conn.execute("PRAGMA secure_delete=ON")
            total, after = 0, 0
            while True:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    rows = conn.execute(UNSEALED_SQL, (after, chunk)).fetchall()
                    for seq, ts, point, value, kind, payload in rows:
                        if kind is None:
                            conn.execute(
                                "UPDATE journal SET value = ? WHERE seq = ?",
                                (sealer.seal_value(value, ts, point), seq),
                            )
                        else:
                            data = orjson.loads(payload) if payload else {}
                            sealed = sealer.seal_payload(data, payload or "{}", ts, point)
                            conn.execute("UPDATE journal SET payload = ? WHERE seq = ?", (sealed, seq))
                    if rows:
                        conn.execute(ADD_COUNTER_SQL, ("sealed_existing", len(rows)))
                        # with the first sealed rows: the trend index holds their clear copies
                        conn.execute(SET_META_SQL, (TREND_STALE_META, "1"))
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                total += len(rows)
                self.counters["sealed_existing"] = self.counters.get("sealed_existing", 0) + len(rows)
                if len(rows) < chunk:
                    break
                after = rows[-1][0]
            if total:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                log.warning("journal: %d sensitive records stored in clear were sealed", total)
            return total
        finally:
            conn.close()

    def meta(self, key: str) -> str | None:
        """A value of the journal's `meta` table (read on a connection of its own), None when absent."""
        conn = connect(self.path)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        finally:
            conn.close()
        return None if row is None or row[0] is None else str(row[0])

    def set_meta(self, values: Mapping[str, str | None]) -> None:
        """Write `values` into the journal's `meta` table in one transaction, on a connection of
        its own beside the writer (a None deletes the key). For a component's small durable
        marks (the trend index to drop, a recipient's key fingerprint), not for the writer's own."""
        conn = connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for key, value in values.items():
                    if key in ("last_seq", "schema_version"):
                        raise ValueError(f"meta key {key!r} is the journal's own")
                    if value is None:
                        conn.execute("DELETE FROM meta WHERE key = ?", (key,))
                    else:
                        conn.execute(SET_META_SQL, (key, value))
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def trend_index_stale(self) -> bool:
        """Records were sealed in place (`seal_existing`) and the trend index, which copied them in
        clear, has not been dropped since (`trend_index_dropped`): a crash may have come between."""
        return self.meta(TREND_STALE_META) is not None

    def trend_index_dropped(self) -> None:
        self.set_meta({TREND_STALE_META: None})

    def _close_connections(self) -> None:
        if self.sealer is not None:
            unregister(self.path, self.sealer)
            unregister(paths.trend_path(self.path), self.sealer)
            self.sealer.close()
            self.sealer = None
        if self._w is not None:
            self._status.write({"open": False})
            self._status.close()
        for conn in (self._read, self._w):
            if conn is not None:
                conn.close()
        self._read = self._w = None

    # ------------------------------------------------------------ reading (event loop side)
    def last_readings(self, rows: int = 200_000) -> tuple[dict[str, Reading], dict[str, Reading]]:
        """The newest reading of each point, and its newest good one, among the newest `rows`
        records (bounded: start-up must not scan a multi-GiB journal)."""
        last: dict[str, Reading] = {}
        good: dict[str, Reading] = {}
        try:
            newest = self.readings_after(max(0, self.committed_seq - rows))
        except sqlite3.DatabaseError as exc:
            if not damaged(exc):
                raise
            # a start reads these first: said in one line that names the file and the way out
            raise JournalUnreadable(
                f"journal {self.path} is damaged: its newest records cannot be read ({exc}). `edge doctor "
                "-c SITE.yaml` runs SQLite's quick_check on it and names the damage; restore it from a "
                "backup taken before the damage (`edge backup` refuses to archive a damaged journal), "
                "see docs/storage.md, 'A damaged journal'"
            ) from None
        for ts, point, value, quality in newest:
            if quality > 3:  # a bool, or the clock flag: in memory a reading has its quality alone
                if quality & BOOL_FLAG:
                    value = bool(value)
                quality &= 3
            r = Reading(ts, point, value, quality)
            last[point] = r
            if quality == 0:
                good[point] = r
        return last, good

    async def wait_committed(self, after: int, timeout: float) -> int:
        """Wait until a record with seq > after is committed, or the timeout; returns committed_seq."""
        if self.committed_seq > after or timeout <= 0 or self._commit_event is None:
            return self.committed_seq
        deadline = time.monotonic() + timeout
        self._commit_waiting += 1  # before the checks below: the writer reads it after committing
        try:
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
        finally:
            self._commit_waiting -= 1
        return self.committed_seq

    # ------------------------------------------------------------ writing (event loop side)
    def append(self, records: Sequence[Record]) -> None:
        """Queue records for the next group commit. Never blocks (the lock is only held for swaps)."""
        with self._cond:
            if self.writer_stopped is not None:  # no writer to take them: counted, not kept
                self.counters["dropped_overflow"] += len(records)
                return
            pending = self._pending
            pending.extend(records)
            self._appended += len(records)
            n = len(pending)
            if n >= self.flush_max_items:
                if n > self.max_pending:  # SQLite has been failing for a while: apply the policy
                    cut = n - self.max_pending
                    if self.when_full == "drop_newest":
                        self._overflow.extend(pending[-cut:])
                        del pending[-cut:]
                    else:
                        self._overflow.extend(pending[:cut])
                        del pending[:cut]
                        self._taken += cut
                self._cond.notify()

    @property
    def pending(self) -> int:
        """Records appended and not yet taken by the writer (the step it is committing is not
        counted: `flush` waits for that one too)."""
        return len(self._pending)

    async def flush(self) -> int:
        """Commit everything appended so far; returns the highest committed seq."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        with self._cond:
            if self._thread is None:
                raise JournalClosed("journal is closed")
            if self.writer_stopped is not None:  # nothing will commit: answer now
                return self.committed_seq
            self._flush_waiters.append((loop, fut, self._appended))
            self._cond.notify()
        return await fut

    async def drained(self, below: int) -> int:
        """Wait until no more than `below` records wait for the writer: it has taken the rest into
        a step, committed or not. A producer's backpressure that keeps appending while the writer
        commits (`flush` waits for every commit, so producer and writer would take turns). Also
        answered when the writer can take nothing now (disk full, failing, closing): what is
        appended then is held or dropped by the full policy. Returns the number still waiting."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        with self._cond:
            if self._thread is None:
                raise JournalClosed("journal is closed")
            if len(self._pending) <= below or self.writer_stopped is not None:
                return len(self._pending)
            self._room_waiters.append((loop, fut, below))
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

    async def remove_cursor(self, name: str) -> None:
        """Forget a cursor (a sink or consumer removed from the site), so it no longer holds data."""
        with self._cond:
            self._ops.append(("DELETE FROM cursors WHERE name=?", (name,)))
        await self.flush()

    # ------------------------------------------------------------ writer thread
    def _writer(self) -> None:
        try:
            self._write_loop()
        except BaseException as exc:  # the thread's last act: say so, never end silently
            self._writer_died(exc)

    def _writer_died(self, exc: BaseException) -> None:
        """The writer thread ends on an error no step handled: the journal reports it (failing,
        `writer_problem`), what waits in memory is counted as dropped, and every waiter is answered
        (nothing will commit what they wait for)."""
        reason = f"{type(exc).__name__}: {exc}"
        with self._cond:
            self.writer_stopped = reason
            left, self._pending = self._pending, []
            overflow, self._overflow = self._overflow, []
            waiters = [*self._flush_waiters, *self._room_waiters]
            self._flush_waiters, self._room_waiters = [], []
        self.failing = True
        self.last_error = f"writer stopped: {reason}"
        self.counters["write_errors"] += 1
        self.counters["dropped_overflow"] += len(left) + len(overflow)
        log.error(
            "journal writer stopped: nothing more is journaled until the gateway restarts; "
            "%d records waiting in memory are dropped: %s",
            len(left) + len(overflow),
            reason,
            exc_info=exc,
        )
        for loop, fut, _ in waiters:
            with contextlib.suppress(RuntimeError):  # the event loop may be closed already
                loop.call_soon_threadsafe(_resolve, fut, self.committed_seq)
        with contextlib.suppress(Exception):
            self._publish(force=True)

    def _write_loop(self) -> None:
        failures_while_closing = 0
        while True:
            with self._cond:
                if not (
                    self._closing
                    or self._flush_waiters
                    or self._room_waiters
                    or len(self._pending) >= self.flush_max_items
                    or self._ready_events
                ):
                    self._cond.wait(self.flush_interval)
            fits = self._rows_that_fit()  # outside the lock: statvfs and pragmas
            with self._cond:
                take = min(len(self._pending), self.flush_max_items if fits is None else fits)
                batch = self._pending[:take]
                del self._pending[:take]
                self._taken += take
                ops, self._ops = self._ops, []
                overflow, self._overflow = self._overflow, []
                closing = self._closing
                if not self._pending or fits == 0:  # nothing more can go in now: answer them all
                    waiters, self._flush_waiters = self._flush_waiters, []
                else:
                    waiters = [w for w in self._flush_waiters if w[2] <= self._taken]
                    self._flush_waiters = [w for w in self._flush_waiters if w[2] > self._taken]
                left = len(self._pending)
                if self._room_waiters:
                    self._answer_room(left, fits == 0 or closing)
            if overflow:
                self._refused(overflow, "queue_overflow", "dropped_overflow")
            if self._bursts:
                self._close_bursts()
            ok = True
            if fits == 0 and (batch or ops or self._ready_events or self.pending):
                with self._cond:
                    self._ops[:0] = ops
                ok = self._hold()
            elif batch or ops or self._ready_events:
                ok = self._commit(batch, ops)
            elif self.disk_full and fits != 0 and not self.failing:  # idle after a full disk
                self._settle()
            self._publish()
            for loop, fut, _ in waiters:
                loop.call_soon_threadsafe(_resolve, fut, self.committed_seq)
            if closing:
                # every step the backlog needs, not one: a step takes at most flush_max_items, or
                # what the disk takes, and what waits after the last one is lost with the process
                if not ok:
                    failures_while_closing += 1
                out_of_time = time.monotonic() >= self._close_by
                if (ok and not self._pending) or failures_while_closing >= 3 or out_of_time:
                    self._give_up()
                    return
                if ok:
                    continue
            if not ok:
                if self._room_waiters:  # failing: the producer's appends meet the full policy
                    with self._cond:
                        self._answer_room(len(self._pending), True)
                time.sleep(min(1.0, max(0.05, self.flush_interval * 5)))
            elif time.monotonic() >= self._next_retention and len(self._pending) < self.flush_max_items:
                self._retention_step()

    def _answer_room(self, left: int, every: bool) -> None:
        """Answer the drained() waiters whose mark `left` records meet (all with `every`), with
        the lock held: the producer runs while this step commits."""
        keep = []
        for waiter in self._room_waiters:
            if every or left <= waiter[2]:
                loop, fut, _ = waiter
                loop.call_soon_threadsafe(_resolve, fut, left)
            else:
                keep.append(waiter)
        self._room_waiters = keep

    def _give_up(self) -> None:
        """Closing with records still waiting (commits fail, or the close's time is up): they
        cannot be kept. Counted in `dropped_overflow` and reported as a `buffer_drop` event of
        reason `shutdown`, both committed in a last small transaction when the disk still takes
        one (it may take a few pages of the reserve: nothing else will write after it), and
        logged with the count either way. Bursts still open are closed and journaled with it."""
        with self._cond:
            left, self._pending = self._pending, []
            overflow, self._overflow = self._overflow, []
        if overflow:
            self._refused(overflow, "queue_overflow", "dropped_overflow")
        if left:
            self._refused(left, "shutdown", "dropped_overflow")
        self._close_bursts(every=True)  # the end of each burst, now
        # why, before the last transaction below clears `failing`
        why = self.last_error if self.failing else f"the close's {self.close_budget:.0f} s were up"
        kept = ""
        if self._ready_events or self._unsaved:
            with self._cond:
                ops, self._ops = self._ops, []
            _, exc = self._attempt([], ops, events_only=True)
            if exc is not None:
                kept = f"; the count could not be committed either ({type(exc).__name__}: {exc})"
        if left or overflow:
            log.error(
                "journal closed with %d records it could not commit, counted in dropped_overflow "
                "and reported as a buffer_drop event%s: %s",
                len(left) + len(overflow),
                kept,
                why,
            )

    # ------------------------------------------------------------ space
    def _room(self) -> space.Room | None:
        if self.disk_reserve is None or self._w is None:
            return None
        return space.measure(self._w, self.path, self.disk_reserve, self.counters.get("rows", 0))

    def _rows_that_fit(self) -> int | None:
        """Records the next step may insert: `flush_max_items`, fewer when the WAL of more would
        reach into the reserve, 0 when not even a step's fixed pages fit (None: no reserve).
        The room measured here is the one the step's commit sizes its byte limit with: statvfs
        and three pragmas once per step, not twice."""
        self._step_room = None
        try:
            room = self._room()
        except sqlite3.Error:
            return None
        if room is None:
            return None
        self._step_room = room
        self.free_bytes = room.free
        self._disk_share(room)
        rotate = self._may_rotate()
        fits: int | None = room.rows_that_fit(self.flush_max_items, rotate)
        # a few steps from the reserve: checkpoint after each step so the WAL does not pile up
        # (not otherwise: a TRUNCATE checkpoint per flush costs an fsync and wears an SD card)
        self._tight = room.spare < TIGHT_STEPS * room.wal_bytes(self.flush_max_items)
        if fits == 0 and space.file_size(self.path + "-wal") > 0:
            self._checkpoint()  # the WAL may be holding the space: give it back and measure again
            fits = self._measure_again(rotate)
        if fits == 0 and self._reclaim():  # the stores beside it gave back what they could
            fits = self._measure_again(rotate)
        return fits

    def _measure_again(self, rotate: bool) -> int | None:
        try:
            room = self._room()
        except sqlite3.Error:
            room = None
        self._step_room = room
        if room is None:
            return None
        self.free_bytes = room.free
        return room.rows_that_fit(self.flush_max_items, rotate)

    def add_space_reclaimer(self, fn: Callable[[], object]) -> None:
        """Run `fn()` in the writer thread when not even a small step fits beyond the reserve, at
        most every RECLAIM_INTERVAL_S: a store beside the journal on its filesystem (the state
        database, the trend index) gives back what it holds without need, its WAL above all,
        which grew while the disk was full and which nothing else truncates. It may do so later
        in a thread of its own: the writer measures again at its next attempt. A failing `fn` is
        logged and tried again at the next interval."""
        self._reclaimers.append(fn)

    def add_own_space(self, fn: Callable[[], int]) -> None:
        """Count `fn()`, the bytes another store of the gateway holds on the journal's filesystem
        (the data keys, their WAL), as the gateway's own when a full step stops fitting
        (`_disk_share`): its growth is the gateway's, not another program's taking. Called in the
        writer thread once per step while the disk is near its limit: a few stats, no I/O beyond.
        A failing `fn` counts 0 and is logged."""
        self._own_space.append(fn)

    def _own_bytes(self) -> int:
        total = 0
        for fn in list(self._own_space):
            try:
                total += max(0, int(fn()))
            except Exception as exc:  # a store failing must not stop the journal
                log.warning("journal: %r could not say the space it holds: %s", fn, exc)
        return total

    def _reclaim(self) -> bool:
        """Ask the stores beside the journal for their space; True when any was asked."""
        now = time.monotonic()
        if not self._reclaimers or now < self._reclaimed + RECLAIM_INTERVAL_S:
            return False
        self._reclaimed = now
        for fn in list(self._reclaimers):
            try:
                fn()
            except Exception as exc:  # one store failing must not stop the journal
                log.warning("journal: %r could not give space back: %s", fn, exc)
        return True

    def _disk_share(self, room: space.Room) -> None:
        """Decide, when a full step stops fitting on the disk, whose doing it is. When the free
        space went into the journal's own files (its data, its WAL) since the step before, the
        journal grew into the limit: as at `max_bytes`, drop_oldest then replaces the oldest rows
        with newer ones within that space. When another program took it, deleting committed rows
        would not give it back (the file does not shrink) and the newer records would wait for
        that space anyway, so nothing committed is deleted: the journal uses its free pages, then
        holds the newest in memory (`max_pending`, counted beyond). Decided once per episode; it
        ends when a full step fits again. Costs one stat (the WAL's size) per step."""
        most = self.flush_max_items
        limited = room.limited(most)
        if self._disk_limited and not limited:  # hysteresis: over only with room for a few steps
            limited = room.spare < SPACE_BACK_STEPS * room.wal_bytes(most)
        total = room.free + room.file_bytes + space.file_size(self.path + "-wal") + self._own_bytes()
        before, self._disk_total = self._disk_total, total
        if not limited:
            self._rotating = False
        elif not self._disk_limited:
            slack = space.SHM_CHUNK + space.STEP_FIXED_PAGES * room.page_size  # -shm, the estimates
            if before is None:  # the first step since open: compare the limit with what is stored
                self._rotating = room.data_limit(most) + slack >= room.used
            else:
                self._rotating = total + slack >= before
            if self._rotating and self.when_full == "drop_oldest":
                log.warning(
                    "journal: the filesystem of %s is full (%d bytes free, %d reserved): the journal "
                    "keeps the newest records in the space it has, deleting the oldest as newer ones "
                    "come (when_full=drop_oldest)",
                    self.path,
                    room.free,
                    room.reserve,
                )
            elif self.when_full == "drop_oldest":
                log.warning(
                    "journal: another program took the free space on the filesystem of %s "
                    "(%d bytes free, %d reserved): committed records are kept and newer ones wait "
                    "in memory (up to %d) until space returns",
                    self.path,
                    room.free,
                    room.reserve,
                    self.max_pending,
                )
        self._disk_limited = limited

    def _may_rotate(self) -> bool:
        """The full policy may delete committed rows to make room on the disk (see _disk_share):
        drop_newest deletes only delivered history, and only what the new rows take."""
        return self.when_full != "drop_oldest" or self._rotating

    def _checkpoint(self) -> bool:
        """Copy the WAL into the file and truncate it, waiting briefly for readers: a reader holding
        an old snapshot keeps the frames it may still read (the next steps then see less room)."""
        w = self._w
        assert w is not None
        return checkpoint(w)

    def _hold(self) -> bool:
        """Not even one step fits beyond the reserve: write nothing rather than take the reserve
        (SQLite would fill it, then fail). drop_newest refuses what waits; drop_oldest keeps it in
        memory up to `max_pending`. Returns False (nothing committed)."""
        reserve = self.disk_reserve or 0
        free = self.free_bytes if self.free_bytes is not None else 0
        self._enter_full()
        self.failing = True
        self.last_error = (
            f"disk full: {free} bytes free on the filesystem of {self.path}, {reserve} reserved; "
            f"nothing is written until space returns"
        )
        if self.when_full == "drop_newest":
            with self._cond:
                refused, self._pending = self._pending, []
            self._refused(refused, "disk_full", "dropped_newest")
        self._commit_events()
        self.failing = True  # a step of events only (below) is no recovery
        return False

    def _commit_events(self) -> None:
        """While holding: journal the events that wait (a drop burst's start above all, so a crash
        while the disk is full still leaves a trace), the cursor moves (a sink's delivery, so a
        restart does not send it again; delivered history is then what drop_oldest may replace)
        and the counters not yet persisted, in a small step without records, when that step fits
        beyond the reserve (`space.Room.small_fits`)."""
        room = self._step_room
        if not (self._ready_events or self._ops or self._unsaved):
            return
        if room is None or not room.small_fits(len(self._ready_events)):
            return
        with self._cond:
            ops, self._ops = self._ops, []
        self._commit([], ops, events_only=True)

    def _enter_full(self) -> None:
        self._last_full = time.monotonic()
        if not self.disk_full:
            log.error("journal: disk full (%s); applying when_full=%s", self.path, self.when_full)
        self.disk_full = True
        self.recovering = False
        self._recovery = None

    def _after_step(self, rows: int, disk_drop: bool) -> None:
        """A step committed: leave the disk-full state once the backlog is in and nothing was
        dropped for lack of space; checkpoint between steps while space is tight."""
        if disk_drop:
            self._enter_full()
        elif self.disk_full:
            rec = self._recovery
            if rec is None:
                rec = self._recovery = {"started": time.monotonic(), "rows": 0, "steps": 0}
            rec["rows"] += rows
            rec["steps"] += 1
            if self.pending >= self.flush_max_items:
                self.recovering = True
            else:
                self._settle()
        if self.disk_reserve is None:
            if self.disk_full:
                self._checkpoint()
            return
        wal = space.file_size(self.path + "-wal")
        self.peak_wal_bytes = max(self.peak_wal_bytes, wal)
        if not (self.disk_full or self._tight):
            return
        # the lowest free space of the step: after its commit, minus what the checkpoint adds to
        # the file before it truncates the WAL
        before_free, before_size = space.free_bytes(self.path), space.file_size(self.path)
        self._checkpoint()
        grown = max(0, space.file_size(self.path) - before_size)
        if before_free is not None:
            low = before_free - grown
            self.min_free_bytes = low if self.min_free_bytes is None else min(self.min_free_bytes, low)

    def _settle(self) -> None:
        """The backlog is in: leave the disk-full state, and say so once, when SPACE_BACK_S passed
        since the last hold or drop for lack of space (until then the state stays, quietly)."""
        if time.monotonic() - self._last_full < SPACE_BACK_S:
            return
        rec = self._recovery or {"started": self._last_full, "rows": 0, "steps": 0}
        self.last_recovery = {
            "rows": rec["rows"],
            "steps": rec["steps"],
            "seconds": round(time.monotonic() - rec["started"], 3),
            "ended": self.clock(),
        }
        log.info(
            "journal: space is back; the backlog of %d records went in %d steps in %.2f s",
            rec["rows"],
            rec["steps"],
            self.last_recovery["seconds"],
        )
        # then the state: whoever sees it end (a health check, `edge buffer stats`) finds the
        # recovery's figures and its log line there already
        self.disk_full = self.recovering = False
        self._recovery = None

    def _publish(self, force: bool = False) -> None:
        """The writer's state for other processes; the backlog figure at most every 0.2 s."""
        now = time.monotonic()
        flags = (self.disk_full, self.recovering, self.failing, self.retention_paused, self.retention_error)
        if not force and flags == self._published_flags and now - self._published < PUBLISH_INTERVAL_S:
            return
        self._published, self._published_flags = now, flags
        troubled = self.disk_full or self.failing
        self._status.write(
            {
                "open": True,
                "disk_full": self.disk_full,
                "recovering": self.recovering,
                "failing": self.failing,
                "backlog_rows": self.pending if troubled else 0,
                "last_error": self.last_error if troubled else "",
                "disk_reserve": self.disk_reserve,
                "min_free_bytes": self.min_free_bytes,
                "peak_wal_bytes": self.peak_wal_bytes if troubled else None,
                "last_recovery": self.last_recovery,
                "retention_paused": self.retention_paused,
                "retention_failures": self.retention_failures,
                "retention_error": self.retention_error,
            }
        )

    def _refused(self, records: list[Record], reason: str, counter: str) -> None:
        self._count(counter, len(records))
        self._burst(reason).add_refused(records)

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n
        self._unsaved[name] = self._unsaved.get(name, 0) + n

    def _burst(self, reason: str) -> retention.DropBurst:
        b = self._bursts.get(reason)
        if b is None:
            b = self._bursts[reason] = retention.DropBurst(reason, self.when_full, self.clock())
        return b

    def _close_bursts(self, every: bool = False) -> None:
        """A burst ends after BURST_QUIET_S without a drop, or is cut after BURST_MAX_S; with
        `every` (the journal closes) all end now. One of ANNOUNCED_BURSTS is also journaled at its
        start: phase `started`, `dropped` 0 and the drops so far in `dropped_so_far`; its end
        (phase `ended`) counts the whole burst as before, so the events' `dropped` still add up
        to the counters."""
        now = time.monotonic()
        for reason, b in list(self._bursts.items()):
            if every or b.quiet() or now - b.started >= retention.BURST_MAX_S:
                del self._bursts[reason]
                event = b.event(self.source, self.clock(), self.counters)
                if reason in self._announced:
                    self._announced.discard(reason)
                    event.payload["phase"] = "ended"
                self._ready_events.append(event)
            elif reason in ANNOUNCED_BURSTS and reason not in self._announced and b.dropped:
                self._announced.add(reason)
                event = b.event(self.source, self.clock(), self.counters)
                event.payload.update(phase="started", dropped=0, dropped_so_far=b.dropped)
                self._ready_events.append(event)

    def _commit(
        self, batch: list[Record], ops: list[tuple[str, tuple[Any, ...]]], events_only: bool = False
    ) -> bool:
        """One group commit; True on success. On failure the records are kept (or refused by
        the full policy) and counted; committed rows are never touched by a failure. The same
        records failing twice with a data error (`unwritable`) are split (`_bisect`), so the one
        that can never be written is set apart instead of holding back the site's journal."""
        # what the attempt kept: the tail the byte cap refused (drop_newest) is counted as dropped
        # already, and neither retried nor split
        batch, exc = self._attempt(batch, ops, events_only)
        if exc is None:
            self._suspect = None
            return True
        renumbered = _seq_taken(exc) and self._seqs_taken_elsewhere(len(batch) + len(self._ready_events))
        if events_only:  # the events wait for the next step
            with self._cond:
                self._ops[:0] = ops
            return False
        first = self._ready_events[0] if self._ready_events else batch[0] if batch else None
        error = f"{type(exc).__name__}: {exc}"
        shape = DIGITS.sub("#", error)  # "Error binding parameter 15": wherever the record sits
        if first is None or not unwritable(exc):
            self._suspect = None
        elif first is self._suspect or shape == self._bisected:
            # the same records failed alike before, or the error the last split found in a record
            # is back (a point giving such a value at every poll): find the culprit now, without
            # the retry's wait and without saying it again
            self._suspect = None
            self._bisected = shape
            self._count("write_errors")
            self.failing = True
            self.last_error = error
            return self._bisect(batch, ops)
        else:
            self._suspect = first
        self._failed(exc, batch, ops, logged=renumbered)
        return False

    def _attempt(
        self,
        batch: list[Record],
        ops: list[tuple[str, tuple[Any, ...]]],
        events_only: bool = False,
        own: int = 0,
    ) -> tuple[list[Record], Exception | None]:
        """One transaction of the events waiting, `batch` and `ops`, with its bookkeeping when it
        commits. Returns the records of `batch` it kept, and the exception (rolled back) when it
        did not commit: under drop_newest the byte cap refuses the batch's tail before inserting
        (counted as dropped whether the commit succeeds or not), and only what it kept is for a
        retry or a split. The journal's own events, the ones waiting and the first `own` records
        of `batch` (a split of them, `_bisect`), are never refused by the cap."""
        w = self._w
        assert w is not None
        cap: retention.CapResult | None = None
        reason = "max_bytes"
        try:
            w.execute("BEGIN IMMEDIATE")
            limit = None
            if batch:
                limit, reason = self._limit(len(batch) + len(self._ready_events))
            drop_oldest = self.when_full == "drop_oldest"
            if limit is not None and not drop_oldest and len(batch) > own:  # refuse before inserting
                cap = retention.make_room(
                    w,
                    incoming=len(batch) - own,
                    max_bytes=limit,
                    drop_oldest=False,
                    committed=self.committed_seq,
                    rows=self.counters["rows"],
                )
                if cap.short_rows:
                    keep = max(own, len(batch) - cap.short_rows)
                    self._refused(batch[keep:], reason, "dropped_newest")
                    batch = batch[:keep]
            records: list[Record] = [*self._ready_events, *batch] if self._ready_events else batch
            seq = self.next_seq
            end = seq + len(records)
            if self.sealer is not None and not self._secure_delete:
                w.execute("PRAGMA secure_delete=FAST")  # deleted sealed rows leave no stale bytes behind
                self._secure_delete = True
            converted: list[tuple[str, Any]] = []  # integers journaled as floats (counted inside)
            private = insert_records(
                w, records, seq, self.classes, self.sealer, self._clock_untrusted(), converted
            )
            # measure after inserting, trim the head to fit (not while the whole file fits)
            if limit is not None and drop_oldest and self._page_bytes(w) > limit:
                cap = retention.make_room(
                    w,
                    incoming=0,
                    max_bytes=limit,
                    drop_oldest=True,
                    committed=end - 1,
                    rows=self.counters["rows"] + len(records),
                )
            for sql, args in ops:
                w.execute(sql, args)
            fresh = {"rows": len(records)}  # this transaction's own counter changes
            if cap is not None:
                fresh["rows"] -= cap.trimmed + cap.dropped
                fresh["history_trimmed"] = cap.trimmed
                fresh["dropped_oldest"] = cap.dropped
            tx = dict(self._unsaved)  # ...plus increments earlier failures could not persist
            for name, n in fresh.items():
                tx[name] = tx.get(name, 0) + n
            for name, n in tx.items():
                if n and name in COUNTERS:
                    w.execute(COUNTER_SQL, (n, name))
                elif n:  # a counter created on first use (dropped_unwritable)
                    w.execute(ADD_COUNTER_SQL, (name, n))
            if records:
                w.execute(LAST_SEQ_SQL, (end - 1,))
            w.execute("COMMIT")
        except Exception as exc:  # SQLite's, or a record that cannot be written (sealing): the same
            with contextlib.suppress(sqlite3.Error):
                w.execute("ROLLBACK")
            return batch, exc
        if self.failing and not self.disk_full and not self._bisecting:
            log.warning("journal commits succeed again (the last failure: %s)", self.last_error)
        # committed: make the transaction's effects visible
        for name, n in fresh.items():
            self.counters[name] = self.counters.get(name, 0) + n
        if converted:
            self.counters[INTS_AS_FLOATS] = self.counters.get(INTS_AS_FLOATS, 0) + len(converted)
        self._unsaved.clear()
        if cap is not None and cap.dropped:
            self._burst(reason).add(cap.dropped, cap.first, cap.last)
        self._ready_events = []
        self.failing = False
        # drop_oldest at the limit the journal grew into keeps the newest within it, as at
        # max_bytes: the steady state of a disk-bound journal (disk_low), not a disk-full state
        disk_drop = (
            reason == "disk_full"
            and cap is not None
            and bool(cap.dropped or cap.short_rows)
            and not (self._rotating and self.when_full == "drop_oldest")
        )
        self.next_seq = end
        for rank in private:
            self._private_upto[rank] = end - 1
        if records:
            self.committed_rows += len(records)
            self.flushes += 1
            self.committed_seq = end - 1
            self._sample_rate()
            if self._commit_waiting and self._loop is not None and self._commit_event is not None:
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._commit_event.set)
        if events_only:  # no recovery step: give the WAL back, stay in the state held
            self._checkpoint()
            return batch, None
        self._after_step(len(records), disk_drop)
        return batch, None

    def _bisect(self, batch: list[Record], ops: list[tuple[str, tuple[Any, ...]]]) -> bool:
        """The events waiting and `batch` failed twice with a data error: commit them in halves,
        each half that fails halved again, in order, so the records that commit keep consecutive
        seqs; a record that fails alone is refused (`_unwritable`: counted, logged, reported) and
        gets no seq. The cursor moves (`ops`) go first, alone. An error that is not the data's
        (disk full, I/O, a busy or locked file) stops the split: what is left is kept for the
        retry as any failed commit. True when every record was committed or refused."""
        waiting = len(self._ready_events)
        records: list[Record] = [*self._ready_events, *batch]
        self._ready_events = []
        refused: list[Event] = []  # journaled after the split, never inside one of its halves
        todo = [(0, len(records))]  # (start, end) ranges of `records`, the next one last
        self._bisecting = True
        try:
            while todo or ops:
                lo, hi = todo[-1] if todo else (0, 0)
                part = records[lo:hi] if not ops else []
                own = max(0, min(hi, waiting) - lo) if part else 0
                kept, exc = self._attempt(part, ops, own=own)
                if len(kept) < len(part):  # the byte cap refused the part's tail: gone, counted
                    gone = len(part) - len(kept)
                    del records[lo + len(kept) : hi]
                    hi -= gone
                    # the ranges still to do are all after this one
                    todo = [*((a - gone, b - gone) for a, b in todo[:-1]), (lo, hi)]
                if exc is None:
                    if ops:
                        ops = []
                    else:
                        todo.pop()
                    continue
                if ops or not unwritable(exc):
                    renumbered = _seq_taken(exc) and self._seqs_taken_elsewhere(len(records) - lo)
                    self._ready_events[:0] = cast(list[Event], records[lo:waiting])  # in their place
                    self._failed(exc, records[max(lo, waiting) :], ops, logged=renumbered)
                    self._ready_events.extend(refused)
                    return False
                todo.pop()
                if hi - lo <= 1:
                    if hi > lo:
                        refused.append(self._unwritable(records[lo], exc))
                    continue
                mid = (lo + hi) // 2
                todo += [(mid, hi), (lo, mid)]
        finally:
            self._bisecting = False
        self._ready_events.extend(refused)
        if self._ready_events:  # the buffer_drop events, now rather than with the next step
            _, exc = self._attempt([], [])
            if exc is not None:
                self._failed(exc, [], [])
                return False
        return True

    def _unwritable(self, record: Record, exc: Exception) -> Event:
        """A record that fails alone with a data error: refused, counted (`dropped_unwritable`,
        persisted with the next commit), logged once per error text, and reported as a
        `buffer_drop` event of reason `unwritable`. A personal or sensitive record's error is
        reported by its type alone: the text may quote the value."""
        self._count(DROPPED_UNWRITABLE)
        error = f"{type(exc).__name__}: {exc}"
        if len(error) > ERROR_TEXT_MAX:
            error = error[: ERROR_TEXT_MAX - 1] + "…"
        said = type(exc).__name__ if self._private(record) else error
        payload: dict[str, Any] = {"reason": "unwritable", "policy": self.when_full, "dropped": 1}
        if isinstance(record, Reading):
            payload["point"] = str(record.point)
        else:  # an event, or whatever else was appended
            payload["kind"] = str(getattr(record, "kind", type(record).__name__))
            payload["source"] = str(getattr(record, "source", ""))
        try:
            payload["ts"] = float(getattr(record, "ts", None))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            payload["ts"] = None
        payload["error"] = said
        payload["totals"] = {
            k: self.counters.get(k, 0)
            for k in ("dropped_oldest", "dropped_newest", "dropped_overflow", DROPPED_UNWRITABLE)
        }
        if said not in self._told_unwritable:
            if len(self._told_unwritable) >= TOLD_ERRORS_MAX:
                self._told_unwritable.clear()
            self._told_unwritable.add(said)
            where = payload.get("point") or f"{payload['kind']} event of {payload['source']}"
            log.error(
                "journal: a record that cannot be written was dropped (%s, ts %s): %s; counted in "
                "%s and reported as a buffer_drop event (said once per error)",
                where,
                payload["ts"],
                said,
                DROPPED_UNWRITABLE,
            )
        return Event("buffer_drop", self.source, Severity.WARNING, payload, self.clock())

    def _private(self, record: Record) -> bool:
        """The record is of a personal or sensitive class, or too odd to be classed."""
        try:
            if isinstance(record, Reading):
                ranks = self.classes.private_ranks if self.classes is not None else {}
                return bool(ranks.get(record.point, 0))
            points = self.classes.points if self.classes is not None else {}
            return event_privacy(record.kind, record.payload, points) != Privacy.PUBLIC
        except Exception:
            return True

    def _page_bytes(self, w: sqlite3.Connection) -> int:
        """The file's pages in bytes, free ones included: at most this is in use."""
        if not self._page_size:
            self._page_size = int(w.execute("PRAGMA page_size").fetchone()[0])
        return int(w.execute("PRAGMA page_count").fetchone()[0]) * self._page_size

    def _clock_untrusted(self) -> bool:
        """The records of this commit are stamped by a clock the site does not trust: each row
        carries CLOCK_FLAG. Not before the clock's first check (trusted is None)."""
        trust = self.clock_trust
        return trust is not None and trust.trusted is False

    def _limit(self, rows: int) -> tuple[int | None, str]:
        """The byte limit for a flush of `rows` records: max_bytes, or less when the filesystem
        cannot take the file's growth and the step's WAL beyond the reserve."""
        limit, reason = self.max_bytes, "max_bytes"
        if self.disk_reserve is None:
            return limit, reason
        room, self._step_room = self._step_room, None  # a retried commit measures afresh
        if room is None:
            room = self._room()
        if room is None:
            return limit, reason
        allocated = room.pages * room.page_size
        headroom = max(rows, self.flush_max_items)
        # the file may grow only as far as leaves a full step's WAL beyond the reserve: when the
        # journal itself fills the disk, every next step still fits (drop_oldest makes room inside).
        # Never far below the file as allocated: deleting there frees no byte of the disk
        by_disk = room.allowed(headroom)
        grows_to = room.data_limit(headroom)
        self.disk_low = grows_to < limit if limit is not None else grows_to < allocated
        if not self._may_rotate():  # the space went to another program: nothing committed goes
            return limit, reason
        if limit is None or by_disk < limit:
            limit, reason = by_disk, "disk_full"
        return limit, reason

    def _seqs_taken_elsewhere(self, waiting: int) -> bool:
        """A commit found its seqs taken: another process appended rows to this journal (a second
        gateway on the same site, a tool). The records waiting are numbered anew above the highest
        seq in the file, so the retry commits them instead of failing alike for good; said in the
        log and journaled (`journal_seq_conflict`) with the next commit. True when renumbered."""
        w = self._w
        assert w is not None
        try:
            top = int(w.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0])
            row = w.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        except sqlite3.Error as exc:
            log.error("journal: seqs taken by another writer, and the highest seq cannot be read: %s", exc)
            return False
        top = max(top, int(row[0]) if row else 0)
        if top < self.next_seq:  # not taken after all: nothing to renumber
            return False
        first = self.next_seq
        self.next_seq = top + 1
        # the other writer's rows are walked by retention like rows from before this writer opened
        self._opened_seq = max(self._opened_seq, top)
        self.seq_conflicts += 1
        log.error(
            "journal: another process wrote seqs %d to %d into %s (a second `edge run` on this site?); "
            "the %d records waiting are numbered from %d and committed (seq conflicts since start: %d)",
            first,
            top,
            self.path,
            waiting,
            top + 1,
            self.seq_conflicts,
        )
        payload = {
            "taken_from": first,
            "taken_to": top,
            "renumbered": waiting,
            "next_seq": top + 1,
            "conflicts": self.seq_conflicts,
        }
        self._ready_events.append(
            Event("journal_seq_conflict", self.source, Severity.WARNING, payload, self.clock())
        )
        return True

    def _failed(
        self,
        exc: Exception,
        batch: list[Record],
        ops: list[tuple[str, tuple[Any, ...]]],
        logged: bool = False,
    ) -> None:
        """A commit failed: count it, say so once per distinct error (unless `logged` already),
        and keep the batch for the retry (or refuse it under drop_newest when the disk is full)."""
        self._count("write_errors")
        error = f"{type(exc).__name__}: {exc}"
        repeated = logged or (self.failing and self.last_error == error)
        self.failing = True
        self.last_error = error
        full = isinstance(exc, sqlite3.Error) and is_disk_full(exc)
        if full:
            self._count("disk_full")
            self._enter_full()
        elif not repeated:  # a retry failing alike is no news; the counter says how often
            log.error(
                "journal commit failed (%d records kept and retried until a commit succeeds%s): %s",
                len(batch),
                "; failing alike again, they are split to set apart what cannot be written"
                if unwritable(exc)
                else "",
                error,
                exc_info=None if isinstance(exc, sqlite3.Error) else exc,
            )
        if full and self.when_full == "drop_newest":
            self._refused(batch, "disk_full", "dropped_newest")
            batch = []
        with self._cond:  # keep them, in order, ahead of newer records
            self._pending[:0] = batch
            self._taken -= len(batch)
            self._ops[:0] = ops
        if full and self.when_full == "drop_oldest":
            self._free_space(len(batch))

    def _free_space(self, rows: int) -> None:
        """Disk full under drop_oldest: give the WAL back to the filesystem, then delete the oldest
        rows so their pages can be reused by the retried batch of `rows` records: no more than
        the file's free pages lack for it (none once they suffice, however often the retry
        fails), and none when the space went to another program (see _disk_share)."""
        w = self._w
        assert w is not None
        self._checkpoint()
        if self.disk_reserve is not None and not self._rotating:
            return
        try:
            room = space.measure(w, self.path, self.disk_reserve or 0, self.counters.get("rows", 0))
        except sqlite3.Error:
            room = None
        if room is None:
            return
        if room.spare >= room.wal_bytes(rows) + rows * room.row_bytes:
            return  # the space came back meanwhile (another program freed it): the retry fits
        want = rows - int(room.free_pages * room.page_size / room.row_bytes)
        if want <= 0:
            return
        try:
            w.execute("BEGIN IMMEDIATE")
            n, first, last = retention.delete_head(w, self.committed_seq, want)
            w.execute(COUNTER_SQL, (-n, "rows"))
            w.execute(COUNTER_SQL, (n, "dropped_oldest"))
            w.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                w.execute("ROLLBACK")
            log.warning("journal: could not free space yet: %s", exc)
            return
        self.counters["rows"] -= n
        self.counters["dropped_oldest"] += n
        if n:
            self._burst("disk_full").add(n, first, last)
        self._checkpoint()

    def _retention_step(self) -> None:
        """One small chunk of retention: per privacy class, the oldest records past the class's
        retention (public ones once delivered, personal and sensitive ones delivered or not), and
        snapshot files past theirs; nothing by age while the wall clock is not believed."""
        self._next_retention = time.monotonic() + self.retention_interval
        sample = self._clock_sample()
        if not self._clock_allows(sample):
            return
        w = self._w
        assert w is not None
        now = sample.wall
        snapshots = self._expire_blobs(now)
        self._run_expirers(now)
        chunks: list[retention.ClassExpiry] = []
        try:
            w.execute("BEGIN IMMEDIATE")
            # the look-ahead for rows a wrong clock stamped young reads thousands of rows: once a
            # minute at most, not at every pass
            sweep = time.monotonic() >= self._next_sweep
            if sweep:
                self._next_sweep = time.monotonic() + self.sweep_interval
            for rank, keep in self.retention_s.items():
                if keep is None:
                    continue
                start = self._retention_from[rank]
                if rank and start >= max(self._opened_seq, self._private_upto.get(rank, 0)):
                    start = self._retention_from[rank] = self.committed_seq  # none of its rows since
                chunks.append(
                    retention.expire_class(
                        w,
                        rank,
                        now - keep,
                        start=start,
                        committed=self.committed_seq,
                        limit=self.retention_chunk,
                        swept=self._retention_swept,
                        now=now,
                        sweep=sweep,
                        receives=self.receives,
                    )
                )
            deleted = sum(c.deleted for c in chunks)
            expired = sum(c.expired for c in chunks)
            if deleted + expired:
                w.execute(COUNTER_SQL, (-(deleted + expired), "rows"))
            for name, n in (
                ("retention_deleted", deleted),
                ("retention_expired", expired),
                ("snapshots_expired", snapshots),
            ):
                if n:
                    w.execute(COUNTER_SQL, (n, name))
            w.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                w.execute("ROLLBACK")
            if snapshots:  # the files are gone: count them with the next commit
                self._count("snapshots_expired", snapshots)
            self.retention_failures += 1
            self.retention_error = str(exc)
            self._publish()
            log.warning(
                "journal retention step failed (%d since the start): %s; records past their "
                "retention are kept until it succeeds",
                self.retention_failures,
                exc,
            )
            return
        if self.retention_error is not None:
            log.warning("journal retention works again after %d failed steps", self.retention_failures)
            self.retention_error = None
            self._publish()
        self.counters["rows"] -= deleted + expired
        self.counters["retention_deleted"] += deleted
        self.counters["retention_expired"] += expired
        self.counters["snapshots_expired"] += snapshots
        self._expired_total += deleted + expired
        more = False
        for c in chunks:
            self._retention_from[c.rank] = c.next_start
            more = more or c.more
            if c.expired:
                keep = self.retention_s[c.rank]
                assert keep is not None
                self._law.setdefault(c.rank, retention.LawExpiry(c.rank, keep)).add(c)
            law = self._law.get(c.rank)
            if law is not None and not c.more:  # caught up: one event for what this pass removed
                del self._law[c.rank]
                total = self.counters["retention_expired"]
                self._ready_events.append(law.event(self.source, now, RANK_NAMES[c.rank], total))
                log.warning(
                    "journal: %d %s records past their retention were deleted before every sink "
                    "and consumer had them",
                    law.count,
                    RANK_NAMES[c.rank],
                )
        if more:  # come back right after the next flush, not after a full interval
            self._next_retention = time.monotonic()

    def add_expirer(self, fn: Expirer) -> None:
        """Run `fn(now, retention_s)` in the writer thread with the retention passes the clock guard
        lets through, at most every EXPIRER_INTERVAL_S: a store beside the journal (the sinks' dead
        letters, the data keys) deletes by the same retention and the same trusted clock, and
        never while age-based deletion is on hold (`expirer_interval`: how often). A failing `fn` is logged and tried again at the
        next interval."""
        self._expirers.append(fn)

    def _run_expirers(self, now: float) -> None:
        ran = self._expirers_ran
        if not self._expirers or (ran is not None and time.monotonic() < ran + self.expirer_interval):
            return
        self._expirers_ran = time.monotonic()
        for fn in list(self._expirers):
            try:
                self._ready_events.extend(fn(now, self.retention_s))
            except Exception as exc:  # one store failing must not stop the journal's retention
                log.warning("journal: retention of %r failed: %s", fn, exc)

    def _expire_blobs(self, now: float) -> int:
        """Snapshot files older than the retention of their class (a personal camera's snapshots,
        plain or sealed, are personal, a sensitive camera's sensitive), at most every BLOB_INTERVAL_S;
        returns how many went. One `snapshots_expired` event per class with files deleted."""
        keep = {cls: self.retention_s[PRIVACY_RANK[cls]] for cls in (Privacy.PERSONAL, Privacy.SENSITIVE)}
        if self.blobs is None or all(k is None for k in keep.values()) or time.monotonic() < self._next_blobs:
            return 0
        self._next_blobs = time.monotonic() + BLOB_INTERVAL_S
        personal, sensitive = (None if k is None else now - k for k in keep.values())
        try:
            gone = self.blobs.expire(personal, sensitive)
        except OSError as exc:
            log.warning("journal: snapshot files could not be checked for age: %s", exc)
            return 0
        for cls in (Privacy.PERSONAL, Privacy.SENSITIVE):
            of_class = [b for b in gone if b.privacy == str(cls)]
            if of_class:
                payload = {
                    "class": str(cls),
                    "count": len(of_class),
                    "bytes": sum(b.bytes for b in of_class),
                    "blobs": [b.id for b in of_class[:1000]],
                    "retention_s": keep[cls],
                }
                self._ready_events.append(
                    Event("snapshots_expired", self.source, Severity.INFO, payload, now)
                )
        return len(gone)

    def _load_pause(self, conn: sqlite3.Connection) -> None:
        """A retention pause kept by an earlier start: still paused (a restart while the clock is
        wrong must not delete by it), shown as such."""
        row = conn.execute("SELECT value FROM meta WHERE key=?", (PAUSE_META,)).fetchone()
        if row is None and conn is self._w:
            row = self._pause_of_events(conn)
        if row is None:
            return
        try:
            kept = orjson.loads(row[0])
            landed, step, reason = float(kept["landed"]), float(kept["step"]), str(kept["reason"])
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("journal: an unreadable kept retention pause, ignored: %s", exc)
            return
        self._kept_pause, self._pause_step = (landed, step), step
        self.retention_paused = f"{reason} (paused before the last start)"
        self._paused_at = self._paused_since = self._clock_sample().mono  # the clock of the passes

    def _pause_of_events(self, conn: sqlite3.Connection) -> tuple[str] | None:
        """A release before the pause was kept in `meta` journaled it only as an event: once (a read
        of the journal's newest rows, backwards, at the first start of this release, then
        `PAUSE_EVENTS_READ` is set), a `retention_paused` event of that release's last run (no
        `retention_resumed` nor `gateway_started` after it) becomes the kept pause (landed at its
        time, its step), written to `meta` as this release keeps one."""
        if conn.execute("SELECT 1 FROM meta WHERE key=?", (PAUSE_EVENTS_READ,)).fetchone() is not None:
            return None
        # that release ended a pause at its next start without a word: only a pause of its last run
        # counts (none when a gateway_started came after it), and only the newest rows are read
        top = int(conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0])
        last = conn.execute(
            "SELECT kind, ts, payload FROM journal WHERE seq > ? AND kind IN "
            "('retention_paused', 'retention_resumed', 'gateway_started') ORDER BY seq DESC LIMIT 1",
            (top - PAUSE_EVENTS_ROWS,),
        ).fetchone()
        kept: tuple[str] | None = None
        if last is not None and last[0] == "retention_paused":
            try:
                payload = orjson.loads(last[2]) if last[2] is not None else {}
                step = float(payload["step_s"])
                reason = str(payload.get("reason") or f"clock jumped forward {step:.0f} s")
            except (ValueError, TypeError, KeyError):
                step, reason = 0.0, "clock jumped forward; waiting for a trusted clock"
            kept = (orjson.dumps({"reason": reason, "landed": float(last[1]), "step": step}).decode(),)
            conn.execute(SET_META_SQL, (PAUSE_META, kept[0]))
            log.warning("journal retention stays paused, as an earlier release left it: %s", reason)
        conn.execute(SET_META_SQL, (PAUSE_EVENTS_READ, "1"))
        return kept

    @staticmethod
    def end_kept_pause(path: str) -> str | None:
        """Remove the retention pause kept in the journal at `path` (`edge buffer resume-retention`,
        the gateway stopped: its site lock held by the caller). Returns the pause's reason, or None
        when none was kept."""
        conn = connect(path)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key=?", (PAUSE_META,)).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM meta WHERE key=?", (PAUSE_META,))
            try:
                return str(orjson.loads(row[0])["reason"])
            except (ValueError, TypeError, KeyError):
                return "unreadable"
        finally:
            conn.close()

    def _keep_pause(self, reason: str, landed: float) -> None:
        """Keep the pause in the journal's meta, so that a restart does not end it. A failed write
        (a full disk) leaves the pause in memory: it still holds until this gateway stops."""
        w = self._w
        if w is None:
            return
        value = orjson.dumps({"reason": reason, "landed": landed, "step": self._pause_step}).decode()
        try:
            w.execute(SET_META_SQL, (PAUSE_META, value))
        except sqlite3.Error as exc:
            log.warning("journal: cannot keep the retention pause across a restart: %s", exc)

    def _end_kept_pause(self) -> None:
        w = self._w
        if w is None:
            return
        try:
            w.execute("DELETE FROM meta WHERE key=?", (PAUSE_META,))
        except sqlite3.Error as exc:  # the next start is paused again: the safe side
            log.warning("journal: cannot clear the kept retention pause: %s", exc)

    def _kept_pause_ends(self, sample: ClockSample) -> bool:
        """A pause kept from before this start ends when the kernel clock is synchronised (checked
        after this start), or when the wall clock reads more than half the jump behind where the
        jump landed (set back by hand). The trust's memory of a step seen while unsynchronised is
        gone with the restart, so `clock.trust_unsynced` alone does not end it."""
        assert self._kept_pause is not None and self._paused_at is not None
        landed, step = self._kept_pause
        if sample.wall < landed - step / 2:
            return True
        trust = self.clock_trust
        if trust is None:
            return False
        seen = trust.last_sample
        return seen is not None and seen.mono > self._paused_at and bool(trust.synchronised and trust.trusted)

    def _clock_allows(self, sample: ClockSample) -> bool:
        """The clock guard of age-based deletion: False (delete nothing) from a pass that sees the
        wall clock jump forward against the monotonic clock until the clock's trust, checked
        after the jump, says it is trusted; without a trust to ask, until a pass without a jump."""
        last, self._last_pass = self._last_pass, sample
        jump = forward_jump(last, sample, self.clock_tolerance) if last is not None else None
        if jump is not None:
            first = self.retention_paused is None
            self._pause_step = jump.step if first else self._pause_step + jump.step
            reason = f"clock jumped forward {self._pause_step:.0f} s; waiting for a trusted clock"
            self.retention_paused, self._paused_at = reason, sample.mono
            self._keep_pause(reason, sample.wall)
            if self._kept_pause is not None:
                self._kept_pause = (sample.wall, self._pause_step)
            if first:
                self._paused_since = sample.mono
                log.warning("journal retention paused: %s (%s)", reason, jump.describe())
                payload = {"step_s": round(jump.step, 3), "reason": reason, "detail": jump.describe()}
                self._ready_events.append(
                    Event("retention_paused", self.source, Severity.WARNING, payload, sample.wall)
                )
            self._publish(force=True)
            return False
        if self.retention_paused is None:
            return True
        trust = self.clock_trust
        if self._kept_pause is not None:
            if not self._kept_pause_ends(sample):
                return False
        elif trust is not None:
            seen = trust.last_sample  # before `trusted`: see ClockTrust.last_sample
            assert self._paused_at is not None
            # a check at the very instant of the jump's pass may have been before it
            if seen is None or seen.mono <= self._paused_at or not trust.trusted:
                return False
        paused_for = sample.mono - (self._paused_since or sample.mono)
        log.info("journal retention resumed after %.0f s: the clock is trusted again", paused_for)
        self._ready_events.append(
            Event(
                "retention_resumed",
                self.source,
                Severity.INFO,
                {"paused_s": round(paused_for, 3), "paused_reason": self.retention_paused},
                sample.wall,
            )
        )
        self.retention_paused = self._paused_at = self._paused_since = None
        self._kept_pause, self._pause_step = None, 0.0
        self._end_kept_pause()
        self._publish(force=True)
        return True

    def _sample_rate(self) -> None:
        now = time.monotonic()
        r = self._rate
        if not r or now - r[-1][0] >= 1.0:
            r.append((now, self.committed_rows, self._expired_total))
            while len(r) > 2 and now - r[1][0] > 60.0:
                r.popleft()

    # ------------------------------------------------------------ stats
    def rates(self) -> tuple[float | None, float | None]:
        """(records committed per second, records expired per second) over the last minute."""
        r = list(self._rate)
        if len(r) < 2:
            return None, None
        (t0, c0, e0), now = r[0], time.monotonic()
        span = now - t0
        if span <= 0:
            return None, None
        return (self.committed_rows - c0) / span, (self._expired_total - e0) / span


def unwritable(exc: Exception) -> bool:
    """`exc`, from a commit, says a record in it cannot be written (DATA_ERRORS), not that the
    file, the disk or the journal's own numbering failed."""
    if type(exc) not in DATA_ERRORS:
        return False
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return not any(check in text for check in OWN_CHECKS)
    return not (isinstance(exc, sqlite3.ProgrammingError) and "closed database" in text)


def _seq_taken(exc: Exception) -> bool:
    """The commit failed because a row with one of its seqs exists already."""
    return isinstance(exc, sqlite3.IntegrityError) and "journal.seq" in str(exc)


def _resolve(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)
