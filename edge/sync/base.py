"""The push-sink loop every upstream type shares: cursor, batching, filters, retries, dead letters.

A sink reads the journal from its own cursor (`cursors` table, kind "sink"), forms a batch by
count or age, withholds what its filters and privacy class exclude, encodes and compresses the rest
(the subclass's `encode`), sends it, and advances the cursor only after a 2xx — so delivery is
at least once. With `max_in_flight: 1` (the default) one batch is in flight at a time and batches
arrive strictly in `seq` order; with N > 1 up to N consecutive batches are sent at once and the
cursor moves over the contiguous prefix of the delivered ones (edge.sync.window).

Failures: 5xx, 408, 429, timeouts and connection errors are retried with exponential backoff and
full jitter (capped). A server's `Retry-After` is a floor on the next attempt that nothing
shortens. Only when the last attempt got no answer at all (connect error, DNS, timeout, reset)
does a cheap TCP probe, or any other sink's success to the same host, end the wait as soon as the
link is back; a sink the server answered with an error waits its backoff out.
With several batches in flight, one backoff is shared and the failed batches retry in seq order
before new ones are launched (no retry storm).
A non-retryable 4xx is bisected until the rejected record(s) are isolated; those go to the
dead-letter table in the state DB with their privacy class (they expire at its retention:
edge.sync.component), are counted and raised as a `sync_dead_letter` event, and the stream goes
on. A receiver's answer may quote what it refused: `last_error`, the log and that public event keep
its body only when the records it answered were all public. A rejection a sink type recognises as "stored, except records dropped by a rule that holds for
each of them for ever" (InfluxDB's points beyond its retention policy: `dropped_by_receiver`)
delivers the part and counts those as left out, without bisecting. 401/403/404 are configuration problems, not bad records: they are retried, never
dead-lettered (dead-lettering everything on a revoked token would be silent loss). So is an
attempt that fails here, before an answer (a header the HTTP client refuses, an encoding error):
counted, backed off and shown like any other failure, and logged once while it repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import aiohttp

from edge.model import Event, Severity
from edge.privacy.pseudonym import Pseudonymiser, RecordShaper
from edge.store.journal import row_to_record
from edge.store.reader import JournalReader
from edge.store.records import RecordFilter, Row
from edge.sync import deadletters
from edge.sync.deadletters import CLASS_NAMES, SENSITIVE
from edge.sync.retry import LinkBoard, Outcome, parse_retry_after
from edge.sync.sink_config import PushSinkConfig, ssl_context, without_userinfo
from edge.sync.window import BatchSizer, Recovery, Signal, Slot, Window
from edge.validation import resolve_secret

if TYPE_CHECKING:
    from edge.plugins import ComponentContext

log = logging.getLogger("edge.sync")

#: one process-wide value per gateway start, sent as X-Edge-Instance (diagnostics: a receiver can
#: tell a replay after a restart from a retry).
INSTANCE = uuid.uuid4().hex[:12]
USER_AGENT = "community-edge-sync/1"
PREFETCH = 2  # batches built ahead while one is sent (each with its own read connection)
STATUS_EVERY = 1.0  # seconds between two status snapshots written to the state DB, at least

__all__ = ["LinkBoard", "Outcome", "Prepared", "PushSink", "PushSinkConfig"]


DEAD_LETTER_KIND = "sync_dead_letter"  # the event journaled for each new dead letter

#: bytes of a receiver's 2xx answer read (and dropped): a longer one closes the connection
ANSWER_READ = 64 * 1024


async def answer_text(resp: aiohttp.ClientResponse, limit: int) -> str:
    """The start of a receiver's answer as text, at most `limit` characters: read raw (the
    session does not decompress) and, when gzip or deflate, unpacked no further than `limit`."""
    raw = await resp.content.read(limit if resp.headers.get("Content-Encoding") is None else 64 * 1024)
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("gzip", "deflate", "x-gzip"):
        try:
            raw = zlib.decompressobj(47).decompress(raw, limit)  # 47: gzip or zlib, by its header
        except zlib.error:
            return f"(a {encoding} answer that does not unpack)"
    return raw[:limit].decode("utf-8", "replace")


@dataclass
class LocalFailure(Outcome):
    """An attempt that failed here, before or while sending (a header aiohttp refuses, an encoder
    error): a failure like any other, retried with backoff, but not one of the link, so the link
    coming back is no reason to try again early."""

    cause: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def link_failed(self) -> bool:
        return False


@dataclass
class Prepared:
    rows: list[Row]  # the rows to send (after filters); empty: all withheld, just move past
    first: int  # seq range covered (filtered rows inside it are withheld on purpose)
    last: int
    body: bytes | None = None  # the compressed request body, when built ahead
    #: `rows` as the journal holds them, where the recipient's shaping (pseudonyms, withheld
    #: fields) changed some: a dead letter is sealed under the key of the resident its row names
    sources: list[Row] | None = None


async def _cancel_all(tasks: deque[asyncio.Task[Any]]) -> None:
    while tasks:
        task = tasks.popleft()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


# ---------------------------------------------------------------- the sink
class PushSink:
    """Base class; subclasses set `type_name`, `config_model` and implement `encode`/`target`."""

    type_name: ClassVar[str] = ""
    config_model: ClassVar[type[PushSinkConfig]] = PushSinkConfig
    content_type: ClassVar[str] = "application/json"

    def __init__(self, cfg: PushSinkConfig, ctx: ComponentContext, links: LinkBoard | None = None) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.ctx = ctx
        self.journal = ctx.journal
        self.gateway = ctx.site.site.id
        self.links = links or LinkBoard()
        parts = urlsplit(cfg.url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.token = resolve_secret(cfg.token_env, cfg.token_file, f"upstream {cfg.id} token")
        self.filter = RecordFilter(
            cfg.include, cfg.max_privacy, lambda: ctx.hub.points, lambda: ctx.hub.points_version
        )
        # the key is read once, here: a missing or readable-by-others key file stops the start
        pseudonymiser = (
            Pseudonymiser(cfg.pseudonymise, f"upstream {cfg.id} pseudonymise")
            if cfg.pseudonymise is not None
            else None
        )
        self.shaper = RecordShaper(pseudonymiser, lambda: ctx.hub.points, lambda: ctx.hub.points_version)
        self.readers: list[JournalReader] = []
        self.cursor = 0
        # batches built ahead (each with its own read connection): enough to refill the window
        self.prefetch = max(PREFETCH, cfg.max_in_flight)
        self._signal = Signal()  # the window or the recovery changed
        self._window = Window(cfg.max_in_flight)
        self._recovery = Recovery(self._signal)
        self._launched = 0  # seq up to which batches have been handed to a delivery
        self.sizer = BatchSizer(cfg.batch.max_items, cfg.batch.max_bytes, cfg.timeout.total)
        self.task: asyncio.Task[None] | None = None
        # status, in memory since this start (the last snapshot is persisted for `edge sync status`)
        self.sent_rows = 0
        self.sent_batches = 0
        self.sent_bytes = 0
        self.failures = 0  # failed attempts (each one is retried or bisected)
        self.retries = 0
        self.dead_letters = 0  # since start
        self.dead_letters_total = 0  # unresolved rows in the table
        # deleted at their privacy class's retention (kept across restarts in the saved status)
        self.dead_letters_expired = 0
        self.last_success: float | None = None
        self.last_error = ""
        self.last_error_at: float | None = None
        self._logged_error = ""  # the last error logged since the last success (logged once)
        self.retry_at: float | None = None  # monotonic deadline of the current backoff
        self.throttled_s = 0.0
        self.bytes_per_row = 100.0  # running estimate of encoded size, for backlog_bytes
        self._attempt_no = 0
        self._bw_next = 0.0
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever the cursor moves
        self._cursor_dirty = asyncio.Event()
        self.durable_cursor = 0
        self._persister: asyncio.Task[None] | None = None
        self._not_before = 0.0  # monotonic: no attempt before this (the server's Retry-After)
        self._status_dirty = asyncio.Event()
        self._status_written: dict[str, Any] | None = None
        self._status_writer: asyncio.Task[None] | None = None
        self.started_at = 0.0

    # ------------------------------------------------------------ subclass hooks
    def encode(self, rows: list[Row], first: int, last: int) -> bytes:
        """The uncompressed request body for `rows` covering seq range first..last."""
        raise NotImplementedError

    def target(self) -> str:
        return self.cfg.url

    def extra_headers(self, body: bytes, first: int, last: int) -> dict[str, str]:
        return {}

    def dropped_by_receiver(self, outcome: Outcome) -> int | None:
        """For a rejection that says the receiver stored the part except records it drops by a
        rule that holds for each of them alike and for ever (InfluxDB: points beyond its
        retention policy), how many it dropped: the sink counts them as left out for that reason
        and the part is delivered, not bisected (bisecting cost 2N-1 requests and N dead letters
        that no retry could ever deliver). None: an ordinary rejection."""
        return None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        assert self.ctx.state is not None
        deadletters.ensure(self.ctx.state)
        self.dead_letters_total = deadletters.pending(self.ctx.state, self.id)
        expired = deadletters.saved_status(self.ctx.state, self.id).get("dead_letters_expired")
        self.dead_letters_expired = expired if type(expired) is int else 0
        await self._take_cursor_name()
        self.cursor = self.durable_cursor = await self.journal.register_cursor(self.id, "sink")
        self.readers = [JournalReader(self.journal.path) for _ in range(self.prefetch)]
        self.started_at = time.monotonic()
        self.task = asyncio.create_task(self._run(), name=f"sink:{self.id}")
        self._persister = asyncio.create_task(self._persist_cursor(), name=f"sink:{self.id}:cursor")
        self._status_writer = asyncio.create_task(self._persist_status(), name=f"sink:{self.id}:status")

    async def _take_cursor_name(self) -> None:
        """A pull consumer (an API token's) that acknowledged under this sink's id before the sink
        was configured left a cursor of that name: its position says what that consumer stored,
        not what this sink delivered, and taking it over would skip everything before it. The
        sink starts on a cursor of its own, as a new sink does; the consumer's is removed, logged
        and journaled (`cursor_removed`), and its token is refused from now on (edge.api.pull)."""
        held = self.journal.cursors().get(self.id)
        if held is None or held[0] != "consumer":
            return
        await self.journal.remove_cursor(self.id)
        log.warning(
            "sink %s: removed the pull consumer cursor of the same id (at seq %d); the sink starts on "
            "its own, and a pull token naming consumer %s is refused: give it another consumer id",
            self.id,
            held[1],
            self.id,
        )
        self.ctx.hub.publish_event(
            Event(
                "cursor_removed",
                self.id,
                Severity.WARNING,
                {"cursor": self.id, "kind": "consumer", "seq": held[1], "reason": "upstream sink of this id"},
                time.time(),
            )
        )

    async def _persist_cursor(self) -> None:
        while True:
            await self._cursor_dirty.wait()
            self._cursor_dirty.clear()
            seq = self.cursor
            if seq != self.durable_cursor:
                await self.journal.set_cursor(self.id, seq, kind="sink")
                self.durable_cursor = seq

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        for task in (self._persister, self._status_writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._persister = self._status_writer = None
        if self.cursor != self.durable_cursor:
            await self.journal.set_cursor(self.id, self.cursor, kind="sink")
            self.durable_cursor = self.cursor
        with contextlib.suppress(Exception):
            snapshot = self.snapshot()
            if self._changed(snapshot):
                await asyncio.to_thread(self._write_status, snapshot)
        for reader in self.readers:
            reader.close()

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout.total, sock_connect=self.cfg.timeout.connect)
        connector = aiohttp.TCPConnector(ssl=ssl_context(self.cfg) or False, limit=self.cfg.max_in_flight)
        # auto_decompress=False: a receiver's compressed answer is never unpacked whole (a 1 MiB gzip
        # body that unpacks to 1 GiB took the gateway to 2.3 GB and held the loop for seconds)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, headers={"User-Agent": USER_AGENT}, auto_decompress=False
        ) as session:
            self.session = session
            while True:
                self._window = Window(self.cfg.max_in_flight)
                self._recovery = Recovery(self._signal)
                self._launched = self.cursor
                try:
                    async with asyncio.TaskGroup() as deliveries:
                        await self._launch(deliveries)
                except Exception as exc:  # a bug must not end delivery for good
                    while isinstance(exc, ExceptionGroup):
                        exc = exc.exceptions[0]
                    # a failure like any other: counted, backed off, logged once while it repeats
                    self.failures += 1
                    self.retries += 1
                    failure = LocalFailure(None, f"unexpected error: {type(exc).__name__}: {exc}")
                    self._note_error(failure.error, exc)
                    await self._backoff(failure)

    async def _launch(self, deliveries: asyncio.TaskGroup) -> None:
        """Form batches in seq order and hand each to a delivery task, at most `max_in_flight`
        at a time, and none while failed batches wait for their retry."""
        # Batches of a backlog are built ahead, in worker threads, while others are sent:
        # reading, encoding and gzip overlap the POSTs. A prefetched batch covers a fixed seq
        # range (end, end + n], so it does not depend on the one before it; the cursor
        # always ends at a batch's `last` (or inside the batch being bisected).
        ahead: deque[asyncio.Task[Prepared | None]] = deque()
        ahead_end = 0
        built = 0
        try:
            while True:
                if ahead:
                    batch = await ahead.popleft()
                else:
                    await self._wait_for_batch()
                    n = self.batch_items()
                    if self.journal.committed_seq - self._launched >= n:  # a backlog: learn the link
                        n = self.sizer.take(self.bytes_per_row)
                    self.filter.refresh()  # point classes are read on the loop, which alone changes them
                    self.shaper.personal_points()
                    batch = await asyncio.to_thread(self._build, self._launched, None, self.readers[0], n)
                    ahead_end = batch.last if batch is not None else self._launched
                if batch is None:
                    continue
                # each at the size the link asks for now
                while (
                    len(ahead) < self.prefetch
                    and self.journal.committed_seq - ahead_end >= self.batch_items()
                ):
                    n = self.sizer.take(self.bytes_per_row)
                    built += 1
                    reader = self.readers[built % len(self.readers)]
                    self.filter.refresh()
                    self.shaper.personal_points()
                    task = asyncio.to_thread(self._build, ahead_end, ahead_end + n, reader, n)
                    ahead.append(asyncio.create_task(task))
                    ahead_end += n
                await self._signal.until(lambda: not self._window.full and not self._recovery.active)
                slot = self._window.open(batch.first, batch.last)
                self._launched = batch.last
                if batch.rows:
                    deliveries.create_task(self._deliver(batch, slot))
                else:  # everything withheld: just move past it (in turn)
                    await self._passed(slot, batch.last)
        finally:
            await _cancel_all(ahead)

    # ------------------------------------------------------------ batching
    def batch_items(self) -> int:
        """The size of the next batch: by the link, within `batch.max_items` and `max_bytes`."""
        return self.sizer.size(self.bytes_per_row)

    async def _wait_for_batch(self) -> None:
        """Until a full batch is committed after the last launched one, or the oldest record not
        yet launched waited `max_age`."""
        max_age = self.cfg.batch.max_age
        since: float | None = None
        while True:
            max_items = self.batch_items()
            committed = self.journal.committed_seq
            backlog = committed - self._launched
            if backlog >= max_items:
                return
            now = time.monotonic()
            if backlog > 0:
                if since is None:
                    # age from the record's own timestamp: the tail of an old backlog goes at once
                    # (a record stamped in the future, by a skewed device clock, counts as new)
                    oldest = await asyncio.to_thread(self.readers[0].oldest_after, self._launched)
                    age = min(max_age, max(0.0, time.time() - oldest)) if oldest is not None else 0.0
                    since = now - age
                if now - since >= max_age:
                    return
                await self.journal.wait_committed(self._launched + max_items - 1, max_age - (now - since))
            else:
                since = None
                await self.journal.wait_committed(committed, 5.0)  # wake on the first new record

    def _build(self, after: int, upto: int | None, reader: JournalReader, n: int) -> Prepared | None:
        """Read, filter, encode and compress the batch after `after` (up to seq `upto`, else
        `n` records); runs in a worker thread."""
        if upto is None:
            rows = reader.read_rows(after, n)
            if not rows:
                return None
            last = rows[-1][0]
        else:
            rows = reader.read_range(after, upto)
            last = upto
        # shaped here, before any sink type encodes them: http, InfluxDB and MQTT alike carry the
        # recipient's pseudonyms (and a dead letter keeps the rows as they were to be sent)
        allowed = self.filter.apply(rows)
        kept = self.shaper.apply(allowed)
        batch = Prepared(kept, after + 1, last, sources=None if kept is allowed else allowed)
        if kept:
            batch.body = self._encode_compressed(batch)
        return batch

    # ------------------------------------------------------------ delivery
    async def _deliver(self, batch: Prepared, slot: Slot) -> None:
        """Send one batch, bisecting on content rejections; returns when all of it is delivered or
        dead-lettered. A retryable failure waits its turn in the sink's shared recovery."""
        queue = [batch]
        while queue:
            part = queue[0]
            outcome = await self._attempt(part)
            if outcome.ok or outcome.poison:
                self._recovery.answered(slot.first)
            dropped = self.dropped_by_receiver(outcome) if outcome.poison else None
            if dropped is not None:
                queue.pop(0)
                log.warning(
                    "sink %s: the receiver stored seq %d-%d but dropped %d record(s), counted as left out (%s)",
                    self.id,
                    part.first,
                    part.last,
                    dropped,
                    self._answer(outcome, part),
                )
                self._on_success(part)
                await self._passed(slot, part.last)
                continue
            if outcome.ok:
                queue.pop(0)
                if part is batch:
                    self.sizer.observe(part.last - part.first + 1, outcome.elapsed)
                self._on_success(part)
                await self._passed(slot, part.last)
                continue
            self.failures += 1
            cause = outcome.cause if isinstance(outcome, LocalFailure) else None
            self._note_error(outcome.error or self._answer(outcome, part), cause)
            if outcome.poison:
                queue.pop(0)
                if len(part.rows) > 1:
                    mid = len(part.rows) // 2
                    split = part.rows[mid - 1][0]
                    src = part.sources
                    queue[:0] = [
                        Prepared(part.rows[:mid], part.first, split, sources=src[:mid] if src else None),
                        Prepared(part.rows[mid:], split + 1, part.last, sources=src[mid:] if src else None),
                    ]
                else:
                    await self._dead_letter(part.rows[0], outcome, part.sources[0] if part.sources else None)
                    await self._passed(slot, part.last)
                continue
            self.retries += 1
            if outcome.retry_after is not None and outcome.status is not None:
                # the floor of every attempt of this sink, also of batches already waiting
                self._not_before = max(self._not_before, time.monotonic() + outcome.retry_after)
            await self._recovery.wait_turn(slot.first, functools.partial(self._backoff, outcome))

    def _answer(self, outcome: Outcome, part: Prepared) -> str:
        """An answer's status line and the start of its body, as `last_error` and the log show
        it. A receiver often quotes what it refused, so the body is kept only when the batch held
        nothing above public; else a note that it is withheld (the dead letters keep it up to
        their class)."""
        klass = self._private_class(part.sources or part.rows) if outcome.body else None
        if klass is None:
            return f"HTTP {outcome.status}: {outcome.body[:200]}"
        return f"HTTP {outcome.status} (the answer is withheld: the batch held {klass} records)"

    def _private_class(self, rows: list[Row]) -> str | None:
        """The highest class above public among `rows` (as the journal holds them), None when all
        are public. On the event loop: the class of a reading is its point's."""
        if self.filter.max_rank == 0:
            return None  # this sink sends nothing above public
        top = 0
        for row in rows:
            top = max(top, self.filter.rank(row))
            if top >= SENSITIVE:
                break
        return CLASS_NAMES[top] if top else None

    async def _attempt(self, part: Prepared) -> Outcome:
        """One send of `part`. Whatever goes wrong is an Outcome, never an exception: a request
        that cannot even be built (a token with a newline makes a header aiohttp refuses) is a
        failed attempt, counted and retried with backoff like a refused one."""
        try:
            return await self._send(part)
        except Exception as exc:
            return LocalFailure(None, f"cannot send: {type(exc).__name__}: {exc}", cause=exc)

    async def _send(self, part: Prepared) -> Outcome:
        body = part.body if part.body is not None else await asyncio.to_thread(self._encode_compressed, part)
        await self._throttle(len(body))
        headers = {
            "Content-Type": self.content_type,
            "Idempotency-Key": f"{self.gateway}:{self.id}:{part.first}-{part.last}",
            "X-Edge-Instance": INSTANCE,
            **self.extra_headers(body, part.first, part.last),
        }
        if self.cfg.gzip_level > 0:
            headers["Content-Encoding"] = "gzip"
        start = time.monotonic()
        try:
            async with self.session.post(self.target(), data=body, headers=headers) as resp:
                text = ""
                if not 200 <= resp.status < 300:
                    text = await answer_text(resp, 4096)
                else:  # unused: read what a receiver usually says, never an unbounded body
                    await resp.content.read(ANSWER_READ)
                self.sent_bytes += len(body)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                return Outcome(resp.status, "", retry_after, text, elapsed=time.monotonic() - start)
        except aiohttp.ClientConnectorError as exc:
            return Outcome(
                None, f"cannot connect to {self.host}:{self.port}: {exc.os_error}", connect_failed=True
            )
        except TimeoutError:
            self.sizer.timed_out()
            return Outcome(
                None, f"timed out (connect {self.cfg.timeout.connect:g}s, total {self.cfg.timeout.total:g}s)"
            )
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}")

    def _encode_compressed(self, part: Prepared) -> bytes:
        raw = self.encode(part.rows, part.first, part.last)
        self.bytes_per_row = 0.9 * self.bytes_per_row + 0.1 * (len(raw) / max(1, len(part.rows)))
        if self.cfg.gzip_level == 0:
            return raw
        import zlib

        return zlib.compress(raw, self.cfg.gzip_level, wbits=31)  # wbits 31: gzip framing

    async def _throttle(self, nbytes: int) -> None:
        rate = self.cfg.max_bytes_per_s
        if not rate:
            return
        now = time.monotonic()
        start = max(now, self._bw_next)
        self._bw_next = start + nbytes / rate
        if start > now:
            self.throttled_s += start - now
            await asyncio.sleep(start - now)

    def _on_success(self, part: Prepared) -> None:
        self.sent_rows += len(part.rows)
        self.sent_batches += 1
        self.last_success = time.time()
        self._logged_error = ""  # after a success, the same error again is news
        if not self._recovery.active:  # a batch sent before the failure says nothing of the retry
            self._attempt_no = 0
        self.links.link_up(self.host, but=self._wake)  # our own backoff keeps its Retry-After

    async def _passed(self, slot: Slot, seq: int) -> None:
        """`slot` is delivered (or dead-lettered) up to `seq`: move the cursor over what is now
        contiguous. Delivered means move on at once; the durable cursor follows in the background
        (coalesced by _persist_cursor): a crash before it lands only means a replay, never a gap,
        and retention waits for the durable one."""
        slot.upto = seq
        cursor = self._window.passed(self.cursor)
        self._signal.fire()
        if cursor == self.cursor:
            return
        self.cursor = cursor
        self._progress.set()
        self._cursor_dirty.set()
        self._status_dirty.set()

    async def wait_cursor(self, seq: int) -> None:
        """Return once the cursor reached `seq` (wrap in `asyncio.timeout`)."""
        while self.cursor < seq:
            self._progress.clear()
            await self._progress.wait()

    def _note_error(self, message: str, cause: BaseException | None = None) -> None:
        """Record a failed attempt's error; log it when it is news (another error than the last
        one logged, or the first since a success), with the traceback of an unexpected `cause`:
        a sink failing alike every attempt logs once, not a line (or a traceback) per retry."""
        self.last_error = message
        self.last_error_at = time.time()
        self._status_dirty.set()
        if message == self._logged_error:
            return
        self._logged_error = message
        if cause is not None and not isinstance(cause, aiohttp.ClientError | OSError | TimeoutError):
            log.error("sink %s: %s (logged once while it repeats)", self.id, message, exc_info=cause)
        else:
            log.warning("sink %s: %s", self.id, message)

    async def _backoff(self, outcome: Outcome) -> None:
        """Wait before the next attempt: the server's `Retry-After` when it gave one, else full
        jitter over the exponential backoff. Either way never before `_not_before`; a link that
        comes back ends the wait early only after a link failure, and still not before it."""
        retry = self.cfg.retry
        self._attempt_no += 1
        if outcome.retry_after is not None and outcome.status is not None:
            delay = 0.0  # the floor is the whole wait
        else:  # full jitter: uniform over [0, min(cap, initial * 2^n)]
            delay = random.uniform(0, min(retry.max, retry.initial * 2 ** min(self._attempt_no - 1, 30)))
        self.retry_at = max(time.monotonic() + delay, self._not_before)
        self._wake.clear()
        waiters: set[asyncio.Event] = set()
        if outcome.link_failed:
            waiters = self.links.waiters.setdefault(self.host, set())
            waiters.add(self._wake)
        probe = None
        if outcome.connect_failed and delay > retry.probe_every:
            probe = asyncio.create_task(self._probe_until_up(delay))
        try:
            while not self._wake.is_set():
                # another batch's answer may raise the floor while this one waits
                self.retry_at = max(self.retry_at, self._not_before)
                remaining = self.retry_at - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._wake.wait()
            while (rest := self._not_before - time.monotonic()) > 0:
                self.retry_at = self._not_before  # the link is back; the server's floor holds
                await asyncio.sleep(rest)
        finally:
            waiters.discard(self._wake)
            if probe is not None:
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probe
            self.retry_at = None

    async def _probe_until_up(self, horizon: float) -> None:
        """A TCP connect every `probe_every` seconds; success ends the backoff at once."""
        every = self.cfg.retry.probe_every
        deadline = time.monotonic() + horizon
        while time.monotonic() + every < deadline:
            await asyncio.sleep(every)
            try:
                async with asyncio.timeout(self.cfg.timeout.connect):
                    _reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                continue
            self._wake.set()
            return

    # ------------------------------------------------------------ dead letters
    async def _dead_letter(self, row: Row, outcome: Outcome, source: Row | None = None) -> None:
        """Store `row` (as it was sent) as a dead letter; `source`: the row as the journal holds
        it, when the recipient's shaping changed it (the resident it names owns the dead letter's
        key, so forgetting them shreds it)."""
        state = self.ctx.state
        assert state is not None
        # its class (the rule the filter applies), by which it expires from the table
        rank = self.filter.rank(row)
        record = row_to_record(row)
        about = None if source is None else row_to_record(source)

        def add_and_count() -> int:
            deadletters.add(state, self.id, row[0], record, outcome.status, outcome.body, rank, about)
            return deadletters.pending(state, self.id)

        # the count in the same worker call: a bisection that isolates many bad records runs no
        # query per record on the event loop
        self.dead_letters_total = await asyncio.to_thread(add_and_count)
        self.dead_letters += 1
        self._status_dirty.set()
        if row[5] == DEAD_LETTER_KIND:
            # the notice of a dead letter, refused in turn: stored and counted, but no notice of
            # it (a receiver refusing everything made each notice the next dead letter, for ever)
            return
        # the notice is public: the receiver's answer, which may quote the record, goes in it only
        # when the record is public (the dead letter keeps it up to its class)
        notice: dict[str, Any] = {"sink": self.id, "seq": row[0], "status": outcome.status}
        if rank == 0:
            notice["response"] = outcome.body[:500]
        else:
            notice["response_withheld"] = CLASS_NAMES[rank]
        self.ctx.hub.publish_event(Event(DEAD_LETTER_KIND, self.id, Severity.WARNING, notice, time.time()))

    def dead_letter_resolved(self) -> None:
        """A manual retry delivered one of the dead letters."""
        self._recount_dead_letters()

    def dead_letters_gone(self, count: int) -> None:
        """`count` of this sink's dead letters were deleted at their class's retention (on the
        event loop, after the journal's writer deleted them)."""
        self.dead_letters_expired += count
        self._recount_dead_letters()

    def _recount_dead_letters(self) -> None:
        """The pending dead letters as the table holds them now, read after a manual retry or an
        expiry pass (rare; a new dead letter is counted in its own worker call): the count is the
        table's, never one adjusted from a stale value."""
        if self.ctx.state is not None:
            self.dead_letters_total = deadletters.pending(self.ctx.state, self.id)
        self._status_dirty.set()

    async def send_one(self, record_row: Row) -> Outcome:
        """Deliver one record outside the stream (a manual dead-letter retry)."""
        seq = record_row[0]
        return await self._attempt(Prepared([record_row], seq, seq))

    # ------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        backlog, oldest = 0, None
        if self.readers:
            with contextlib.suppress(Exception):
                backlog, oldest = self.readers[0].unsent(self.cursor, self.journal.committed_seq)
        retry_in = None
        if self.retry_at is not None:
            retry_in = round(max(0.0, self.retry_at - time.monotonic()), 3)
        return {
            "id": self.id,
            "type": self.type_name,
            # a URL that carries USER:PASSWORD@ is refused by the site file's check; were one
            # to get through, the status still never shows it (every read-scope caller sees this)
            "url": without_userinfo(self.cfg.url),
            "cursor": self.cursor,
            "backlog_rows": backlog,
            "backlog_bytes": int(backlog * self.bytes_per_row),  # estimate: rows x recent bytes/row
            "oldest_unsent_age_s": round(max(0.0, time.time() - oldest), 3) if oldest else 0.0,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "retry_in_s": retry_in,
            "dead_letters": self.dead_letters_total,
            "dead_letters_expired": self.dead_letters_expired,
            "sent_rows": self.sent_rows,
            "sent_batches": self.sent_batches,
            "sent_bytes": self.sent_bytes,
            "failures": self.failures,
            "retries": self.retries,
            "withheld_privacy": self.filter.withheld_privacy,
            "withheld_filter": self.filter.withheld_filter,
            "throttled_s": round(self.throttled_s, 3),
            "in_flight": self._window.in_flight,
            "max_in_flight": self.cfg.max_in_flight,
            "batch_items": self.batch_items(),
            "instance": INSTANCE,
        }

    def snapshot(self) -> dict[str, Any]:
        """What `edge sync status` shows of a running sink beyond the files: its last success and
        error and its dead letters (the moment's figures, backlog and age, it reads itself); the
        dead letters deleted at their class's retention once there are some."""
        snapshot: dict[str, Any] = {
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "dead_letters": self.dead_letters_total,
            "instance": INSTANCE,
        }
        if self.dead_letters_expired:
            snapshot["dead_letters_expired"] = self.dead_letters_expired
        return snapshot

    def _changed(self, snapshot: dict[str, Any]) -> bool:
        # the same error again (a retry failing alike) is no news: its time alone is not written
        old = self._status_written
        return old is None or any(snapshot[k] != old.get(k) for k in snapshot if k != "last_error_at")

    def _write_status(self, snapshot: dict[str, Any]) -> None:
        if self.ctx.state is not None:
            deadletters.save_status(self.ctx.state, self.id, snapshot)
            self._status_written = snapshot

    async def _persist_status(self) -> None:
        """Write the snapshot when it changed, at most once per STATUS_EVERY seconds (a busy
        sink's last success moves with every batch)."""
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            snapshot = self.snapshot()
            if not self._changed(snapshot):
                continue
            await asyncio.to_thread(self._write_status, snapshot)
            await asyncio.sleep(STATUS_EVERY)
