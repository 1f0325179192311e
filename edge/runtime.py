"""The supervisor: builds and runs a site — journal, hub, drivers, components, web server.

Each device runs in a `DriverSlot` that pumps the driver's stream into the hub and restarts the
driver with capped exponential backoff when it fails; a driver never takes the process down.
Components (rules engine, upstream sync, Modbus server, trend index...) come from the plugins that
declare one (`edge.plugins`), in their order; each has `start()`, `stop()` and `status()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edge import buildinfo, fileperm
from edge.clock import ClockSample, ClockTrust, SyncSource, boottime, kernel_sync_status
from edge.config import Site
from edge.driver import DeviceConfig, Driver, DriverContext
from edge.hub import Hub
from edge.model import (
    PRIVACY_RANK,
    CommandResult,
    CommandStatus,
    Event,
    Health,
    HealthState,
    Privacy,
    Reading,
    Record,
    Severity,
    Value,
    point_id,
)
from edge.plugins import Component, ComponentContext, EventIndex, StartError, registry
from edge.state import StateDB, StateDBError
from edge.store import Journal, row_to_record, space
from edge.store.backup import restored_note
from edge.store.retention import BURST_MAX_S, BURST_QUIET_S
from edge.store.rows import EventMatch

if TYPE_CHECKING:
    from edge.store.blobs import BlobStore

log = logging.getLogger("edge.runtime")
C = TypeVar("C")

#: a device whose driver restarted this many times within CRASH_LOOP_WINDOW seconds is crash
#: looping (`crash_looping` in the status: what a rollout's health gate refuses)
CRASH_LOOP_RESTARTS = 3
CRASH_LOOP_WINDOW = 600.0
#: the most events `Runtime.recent_events` gives a driver (the newest: a driver asks about one
#: device's last minutes, as a camera about the kiosk beside it)
RECENT_EVENTS = 32
#: how many journal rows back `Runtime.recent_events` scans what no event index holds yet (the
#: rows after the trend index's cursor; the whole read on a site without one): the UI's events
#: page bounds its raw scan the same way (the journal has no index on source)
RECENT_SCAN_ROWS = 300_000
#: the site's lock file is the journal's path with this suffix (edge.db: edge.db-lock)
LOCK_SUFFIX = "-lock"
#: attempts at taking the lock while the file found is replaced under it (see SiteLock.acquire)
LOCK_ATTEMPTS = 10


class SiteBusy(StartError):
    """Another process runs this site (it holds the site's lock); nothing was opened or written."""


class SiteLock:
    """One gateway per site: an exclusive `flock` on the journal's path plus LOCK_SUFFIX, taken
    before the runtime opens or writes anything (journal, state DB, trend index, keys, snapshots)
    and held until it has stopped.

    Two processes on one journal would each number records from the max(seq) they read at start,
    and the one that commits second could not commit again; the second also closes what the first
    still counts (a KPI day). The holder writes its pid into the file so that the one refused can
    name it. The kernel drops the lock when its holder exits, killed or not, so a lock file left
    behind by a killed gateway blocks nobody; a gateway that stops removes its own."""

    def __init__(self, journal_path: str) -> None:
        self.path = journal_path + LOCK_SUFFIX
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise SiteBusy naming its holder (StartError when the file cannot be
        opened or locked at all)."""
        if self._fd is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        for _ in range(LOCK_ATTEMPTS):
            fd = self._lock_file()
            # the holder before may have removed the file between its open and its lock here: a
            # lock on a file no longer at the path keeps out nobody; take the one there now
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise StartError(
                f"{self.path}: the site's lock file keeps being replaced; is another gateway starting?"
            )
        with contextlib.suppress(OSError):  # the pid only names the holder: the lock is what counts
            if os.fstat(fd).st_mode & 0o077:  # left readable by an older umask: the user's alone
                os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def _lock_file(self) -> int:
        """The lock file, open and locked by this process."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StartError(
                f"{self.path}: the site's lock file cannot be opened ({exc.strerror or exc}); "
                "the gateway's data directory must be writable by the user it runs as"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise SiteBusy(
                f"another gateway ({holder}) is running this site: {self.path} is locked; stop it "
                "first (systemctl stop community-edge), or give this site file a storage.path in a "
                "folder of its own (the state DB and keys.db go beside the journal); nothing was written"
            ) from None
        except OSError as exc:  # a filesystem without locks
            os.close(fd)
            raise StartError(
                f"{self.path}: the site's lock cannot be taken ({exc.strerror or exc})"
            ) from None
        return fd

    def release(self) -> None:
        """Remove the lock file, then drop the lock (removed while held: whoever opened it before
        takes a lock on a file no longer at the path, and tries again)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(fd)


def _lock_holder(fd: int) -> str:
    """`pid N` from the lock file its holder wrote, or what it is when the file does not say."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "a process that has not written its pid yet"


@dataclass
class DriverDrops:
    """Consecutive drops of one device's driver (the runtime fell behind it): reported as one
    `driver_dropped` event when it ends (BURST_QUIET_S without a drop, cut after BURST_MAX_S), when
    the driver restarts and when the device stops."""

    started_wall: float
    started: float = field(default_factory=time.monotonic)
    last_drop: float = 0.0
    dropped: int = 0
    first_ts: float = 0.0  # time range of the dropped records
    last_ts: float = 0.0

    def add(self, batch: Sequence[Record]) -> None:
        self.last_drop = time.monotonic()
        ts0, ts1 = batch[0].ts, batch[-1].ts
        if self.dropped:
            self.first_ts, self.last_ts = min(self.first_ts, ts0), max(self.last_ts, ts1)
        else:
            self.first_ts, self.last_ts = ts0, ts1
        self.dropped += len(batch)

    def payload(self, total: int) -> dict[str, Any]:
        return {
            "dropped": self.dropped,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "started": self.started_wall,
            "duration_s": round(time.monotonic() - self.started, 3),
            "total": total,
        }


@dataclass
class DriverSlot:
    """One device: its driver instance, the task pumping its stream, restart bookkeeping."""

    config: DeviceConfig
    driver: Driver | None = None
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    last_error: str = ""
    backoff: float = 0.0
    placeholder: Health = field(default_factory=Health)
    first_start: asyncio.Event = field(default_factory=asyncio.Event)  # set after the first start attempt
    #: monotonic times of the restarts within the crash-loop window (older ones are dropped)
    restart_times: deque[float] = field(default_factory=lambda: deque(maxlen=CRASH_LOOP_RESTARTS))
    drops: DriverDrops | None = None  # the drop burst not reported yet
    drops_timer: asyncio.TimerHandle | None = None  # looks whether that burst has ended

    @property
    def health(self) -> Health:
        return self.driver.health if self.driver is not None else self.placeholder

    def crash_looping(self, now: float) -> bool:
        """CRASH_LOOP_RESTARTS restarts within the last CRASH_LOOP_WINDOW seconds (monotonic)."""
        times = self.restart_times
        return len(times) >= CRASH_LOOP_RESTARTS and now - times[0] <= CRASH_LOOP_WINDOW


class Runtime:
    def __init__(
        self,
        site: Site,
        *,
        clock: Callable[[], float] = time.time,
        with_web: bool = True,
        clock_sample: Callable[[], ClockSample] | None = None,
        clock_sync: SyncSource = kernel_sync_status,
        lock: SiteLock | None = None,
    ) -> None:
        """`clock_sample` (wall and monotonic time read together) and `clock_sync` (the kernel's
        NTP status) are the clock trust's sources: injectable, so a test drives a jump or a sync.
        `lock`: the site's lock when the caller took it before (a command that writes files of the
        site before it starts the runtime); the runtime releases it when it stops."""
        self.site = site
        self.clock = clock
        self.with_web = with_web
        st = site.storage
        sample = clock_sample or (lambda: ClockSample(clock(), boottime()))
        #: (wall, monotonic) read together: what the journal's retention and the components (the
        #: KPIs) measure steps of the wall clock with, judged by `clock_trust`
        self.clock_sample: Callable[[], ClockSample] = sample
        self.clock_trust = ClockTrust(site.clock, site.site.id, sync=clock_sync, clock=sample)
        self.clock_check_interval = 10.0  # an adjtimex call and two clock reads: cheap
        self.journal = Journal(
            st.path,
            durability=st.durability,
            flush_interval=st.flush_interval,
            flush_max_items=st.flush_max_items,
            max_bytes=st.max_bytes,
            disk_reserve=st.disk_reserve,
            when_full=st.when_full,
            keep_history=st.keep_history,
            source=site.site.id,
            clock=clock,
            retention_s=site.privacy.retention_s(st.keep_history),
            clock_sample=sample,
            clock_trust=self.clock_trust,
            clock_tolerance=site.clock.max_step,
        )
        self.hub = Hub(self.journal.append)
        self.journal.classes = self.hub  # each record is stored with its privacy class
        self.apply_retention()  # and what each sink and consumer may receive of it
        self.state: StateDB | None = None
        self.slots: dict[str, DriverSlot] = {}
        #: records each device's drivers dropped since the gateway started (kept across driver
        #: restarts and reloads; what the status and /metrics show)
        self.driver_dropped: dict[str, int] = {}
        self.components: dict[str, Component] = {}
        self.web_runner: Any = None
        self.started_at = 0.0
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.backoff_initial = 1.0
        self.backoff_max = 60.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.web_port: int | None = None
        # the newest good reading of each point found in the journal at start (rules take it as
        # the latest value, so `prev` and `p()` mean after a restart what they meant before)
        self.restored_good: dict[str, Reading] = {}
        self._private_kept: set[str] = set()
        self._blob_store: BlobStore | None = None
        self._config_hash: tuple[dict[str, Any], str] | None = None  # (the raw site it hashes, hash)
        #: what the site file changed since it was loaded that only a restart applies (`section`
        #: or `section.key`), as the last reload found it (edge.service.reload)
        self.restart_pending: list[str] = []
        self.lock = lock or SiteLock(st.path)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the site. Raises SiteBusy, having opened and written nothing, when another process
        runs it."""
        self.lock.acquire()  # before anything of the site is opened, created or written
        self.started_at = self.clock()
        if any(d.driver == "camera" for d in self.site.devices):
            self.journal.blobs = self._blobs()  # snapshots expire with their class
        # a restore that left records of the replaced journal out: said once, the first record
        # above them (the note stays, but only counts while nothing was journaled after it)
        restored = await asyncio.to_thread(restored_note, self.site.storage.path)
        self.journal.open()
        try:
            self.state = StateDB(self.site.storage.resolved_state_path(), journal=self.site.storage.path)
        except StateDBError as exc:
            raise StartError(str(exc)) from None
        # a journal holding for disk space asks for the state DB's WAL back, as for the trend index's
        self.journal.add_space_reclaimer(self.state.give_wal_back)
        # its growth (and the trend index's, which registers its own) is the gateway's, not another
        # program's taking of the journal's disk
        state_path = self.state.path
        self.journal.add_own_space(lambda: space.db_bytes(state_path))
        private = await self.make_data_private()
        self.hub.register_points(self.site.point_infos())
        last, self.restored_good = await asyncio.to_thread(self.journal.last_readings)
        self.hub.restore_latest(last.values())
        if restored is not None:
            self.hub.publish_event(
                Event("journal_restored", self.site.site.id, Severity.WARNING, restored, self.clock())
            )
        self.hub.publish_event(
            Event(
                "gateway_started",
                self.site.site.id,
                Severity.INFO,
                {"devices": len(self.site.devices)},
                self.clock(),
            )
        )
        self.check_clock()
        self.spawn(self._watch_clock(), "clock-trust")
        # the components start before the devices: a rule's timer that fell due while the gateway
        # was stopped fires at their start, and its write waits for the device's first start
        for dev in self.site.devices:
            if dev.enabled:
                self.hub.expect_writer(dev.id)
        ctx = self.component_context()
        for plugin in registry().with_hook("component"):
            assert plugin.component is not None
            component = plugin.component(ctx)
            if component is not None:
                await component.start()
                self.components[component.name] = component
        # trend.db, created by its component (the snapshot tree was walked above)
        private += await self.make_data_private(snapshots=False)
        if private:
            log.warning(
                "made data files private (other users could read them): %s", fileperm.summary(private)
            )
        await self.prune_cursors()
        for dev in self.site.devices:
            if dev.enabled:
                self.start_device(dev)
        # Ready means every driver has made its first start attempt (connected or not):
        # commands sent right after READY then reach a driver, not a gap.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(*(s.first_start.wait() for s in self.slots.values()))
        if self.with_web and self.site.web.enabled:
            from edge.api.app import start_web

            try:
                self.web_runner, self.web_port = await start_web(self)
            except OSError as exc:
                raise StartError(
                    f"the web server cannot listen on {self.site.web.listen}: {exc.strerror or exc}; "
                    "another program may be using that port: change web.listen (edge demo: --port)"
                ) from None
        self.ready.set()
        log.info("site started", extra={"site": self.site.site.id, "devices": len(self.slots)})

    async def make_data_private(self, snapshots: bool = True) -> list[str]:
        """Files 0600 and directories 0700 for the journal, trend index, state and (`snapshots`)
        every snapshot, also when the process umask (an embedding program, an older version) made
        them readable."""
        cameras = any(d.driver == "camera" for d in self.site.devices)
        changed, kept = await asyncio.to_thread(
            fileperm.make_private, self.site.storage, blob_dir=cameras, snapshots=snapshots
        )
        for item in kept:
            if item not in self._private_kept:
                self._private_kept.add(item)
                log.info("left with its mode (not only this gateway's data, or not ours): %s", item)
        return changed

    async def prune_cursors(self) -> list[str]:
        """Remove cursors nobody will move again: sinks no longer in the site file, and consumers
        neither declared nor named by a live API token. A forgotten cursor would otherwise hold
        retention back forever (until the byte cap trims)."""
        from edge.api.tokens import list_tokens

        assert self.state is not None
        sinks = {s.id for s in self.site.upstream}
        consumers = {c.id for c in self.site.consumers}
        consumers |= {t["consumer"] for t in list_tokens(self.state) if t["consumer"] and not t["revoked"]}
        removed = []
        for name, (kind, seq, _updated) in self.journal.cursors().items():
            if (kind == "sink" and name not in sinks) or (kind == "consumer" and name not in consumers):
                await self.journal.remove_cursor(name)
                removed.append(name)
                log.warning(
                    "removed the cursor of a %s no longer configured",
                    kind,
                    extra={"cursor": name, "seq": seq},
                )
                self.hub.publish_event(
                    Event(
                        "cursor_removed",
                        self.site.site.id,
                        Severity.WARNING,
                        {"cursor": name, "kind": kind, "seq": seq},
                        self.clock(),
                    )
                )
        return removed

    async def stop(self) -> None:
        """Stop web, drivers, components; flush the journal; release the site's lock. Safe to call
        twice, and after a start refused for the lock (nothing was started: nothing is done)."""
        self.stopping.set()
        if not self.lock.held:
            return
        if self.web_runner is not None:
            with contextlib.suppress(Exception):
                await self.web_runner.cleanup()
            self.web_runner = None
        await asyncio.gather(*(self.stop_device(d) for d in list(self.slots)), return_exceptions=True)
        for name in reversed(list(self.components)):
            try:
                await self.components[name].stop()
            except Exception:
                log.exception("component %s failed to stop", name)
        self.components.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.hub.publish_event(Event("gateway_stopped", self.site.site.id, Severity.INFO, {}, self.clock()))
        await self.journal.close()
        if self.state is not None:
            self.state.close()
            self.state = None
        self.lock.release()  # the last: every file of the site is closed

    def apply_retention(self) -> None:
        """The retention of `site.privacy` in force from the journal's next retention pass on
        (a reload applies it live): the stores beside the journal (dead letters, data keys, trend
        index) are handed the journal's at each pass. Swapped whole, so the writer thread reads
        either the old mapping or the new one, never a mix."""
        site = self.site
        self.journal.retention_s = site.privacy.retention_s(site.storage.keep_history)
        # what each recipient may receive: a private record it may not is not owed to it, so its
        # deletion at retention is no loss (a sink type without `max_privacy` is taken to receive all)
        receives = {c.id: PRIVACY_RANK[c.max_privacy] for c in site.consumers}
        for sink in site.upstream:
            if (most := getattr(sink, "max_privacy", None)) is not None:
                receives[sink.id] = PRIVACY_RANK[Privacy(most)]
        self.journal.receives = receives

    def check_clock(self) -> None:
        """One look at the clock's trust; its transitions are journaled like any event."""
        for event in self.clock_trust.check():
            log.warning("clock: %s: %s", event.kind, event.payload.get("reason", ""))
            self.hub.publish_event(event)

    async def _watch_clock(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.clock_check_interval):
                    await self.stopping.wait()
            if not self.stopping.is_set():
                self.check_clock()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A background task owned by the runtime (cancelled and awaited on stop)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def component_context(self) -> ComponentContext:
        """The narrow view of this runtime a component gets (the state database must be open)."""
        assert self.state is not None, "components are built after the state database is open"
        return ComponentContext(
            site=self.site,
            journal=self.journal,
            hub=self.hub,
            state=self.state,
            clock=self.clock,
            clock_sample=self.clock_sample,
            clock_trust=self.clock_trust,
            restored_good=self.restored_good,
            spawn=self.spawn,
            find_driver=self.driver_with,
            find_component=self.component,
        )

    def component(self, kind: type[C]) -> C | None:
        """The running component of type `kind` (`runtime.component(SyncComponent)`), None when
        the site runs none: a typed lookup instead of `components.get(name)` and a cast."""
        return next((c for c in self.components.values() if isinstance(c, kind)), None)

    # ------------------------------------------------------------ devices
    def driver(self, device_id: str) -> Driver | None:
        """The running driver of `device_id` (None: no such device, disabled, or restarting)."""
        slot = self.slots.get(device_id)
        return slot.driver if slot is not None else None

    def driver_with(self, device_id: str, capability: type[C]) -> C | None:
        """The running driver of `device_id` as `capability` (a capability class of
        `edge.driver`, e.g. `Snapshots`), or None while that driver restarts.

        Raises LookupError, with a message that names the device, when the site has no such
        device, the device is disabled, or its driver does not have the capability (judged on the
        driver's class, so the answer is the same while it restarts)."""
        try:
            dev = self.site.device(device_id)
        except KeyError:
            raise LookupError(f"this site has no device {device_id!r}") from None
        what = getattr(capability, "__name__", str(capability))
        if not issubclass(registry().driver(dev.driver), capability):
            raise LookupError(
                f"device {device_id!r} is a {dev.driver} device, which has no {what} capability"
            )
        slot = self.slots.get(device_id)
        if slot is None:
            raise LookupError(f"device {device_id!r} is disabled")
        driver = slot.driver
        return driver if isinstance(driver, capability) else None

    def _blobs(self) -> BlobStore:
        """One blob store for every camera of the site (the web server opens its own to serve)."""
        if self._blob_store is None:
            from edge.store.blobs import BlobStore

            self._blob_store = BlobStore(self.site.storage.resolved_blob_dir())
        return self._blob_store

    def start_device(self, dev: DeviceConfig) -> None:
        slot = DriverSlot(config=dev)
        self.slots[dev.id] = slot
        self.hub.register_writer(dev.id, self._writer_for(slot))
        slot.task = asyncio.create_task(self._run_device(slot), name=f"device:{dev.id}")

    async def stop_device(self, device_id: str) -> None:
        slot = self.slots.pop(device_id, None)
        if slot is None or slot.task is None:
            return
        slot.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slot.task
        # a task cancelled before it ran never made its first start: a write waiting for it
        # fails now, not after its whole timeout
        slot.first_start.set()
        self._report_drops(slot)

    def _drop_counter(self, slot: DriverSlot) -> Callable[[Sequence[Record]], None]:
        """`DriverContext.report_dropped` of a device: counts each dropped batch (called for each
        one, on the event loop) and opens a burst whose end a timer looks for."""
        device = slot.config.id
        counts = self.driver_dropped

        def report_dropped(batch: Sequence[Record]) -> None:
            if not batch:
                return
            counts[device] = counts.get(device, 0) + len(batch)
            burst = slot.drops
            if burst is None:
                burst = slot.drops = DriverDrops(self.clock())
                loop = asyncio.get_running_loop()
                slot.drops_timer = loop.call_later(BURST_QUIET_S, self._check_drops, slot)
            burst.add(batch)

        return report_dropped

    def _check_drops(self, slot: DriverSlot) -> None:
        burst = slot.drops
        slot.drops_timer = None
        if burst is None:
            return
        now = time.monotonic()
        quiet = now - burst.last_drop
        if quiet >= BURST_QUIET_S or now - burst.started >= BURST_MAX_S:
            self._report_drops(slot)
        else:
            loop = asyncio.get_running_loop()
            slot.drops_timer = loop.call_later(BURST_QUIET_S - quiet, self._check_drops, slot)

    def _report_drops(self, slot: DriverSlot) -> None:
        """Journal the device's open drop burst, if any, as one `driver_dropped` event."""
        burst, slot.drops = slot.drops, None
        if slot.drops_timer is not None:
            slot.drops_timer.cancel()
            slot.drops_timer = None
        if burst is None:
            return
        device = slot.config.id
        payload = burst.payload(self.driver_dropped.get(device, 0))
        log.warning(
            "driver records dropped: the runtime did not keep up",
            extra={"device": device, "dropped": burst.dropped, "total": payload["total"]},
        )
        self.hub.publish_event(Event("driver_dropped", device, Severity.WARNING, payload, self.clock()))

    async def recent_events(self, source: str, since: float) -> list[Event]:
        """The journaled events of device `source` with ts >= since, newest first (at most
        RECENT_EVENTS), their payloads opened as every reader of the journal gets them: what a
        driver asks for through `DriverContext.recent_events`. What the hub has ingested before
        the call is committed first, so an event still on its way to the journal is there too."""
        await self.journal.flush()
        match = EventMatch(source=source, since=since)
        index = next((c for c in self.components.values() if isinstance(c, EventIndex)), None)
        floor = max(0, self.journal.committed_seq - RECENT_SCAN_ROWS)

        def read() -> list[Event]:
            if index is None:
                rows = self.journal.newest_events(match, floor, RECENT_EVENTS)
            else:
                rows = index.newest_events(match, RECENT_EVENTS, floor)[0]
            records = map(row_to_record, rows)
            return [Event(r["kind"], r["source"], r["severity"], r["payload"], r["ts"]) for r in records]

        return await asyncio.to_thread(read)

    async def _run_device(self, slot: DriverSlot) -> None:
        dev = slot.config
        cls = registry().driver(dev.driver)
        ctx = DriverContext(
            site_id=self.site.site.id,
            data_dir=str(Path(self.site.storage.path).parent),
            log=logging.getLogger(f"edge.driver.{dev.id}"),
            clock=self.clock,
            register_points=self.hub.register_points,
            blobs=self._blobs(),
            subscribe=self.hub.subscribe,
            recent_events=self.recent_events,
            report_dropped=self._drop_counter(slot),
        )
        while not self.stopping.is_set():
            driver: Driver | None = None
            started = time.monotonic()
            try:
                try:
                    # a constructor that raises (a secret that cannot be resolved...) is a failed
                    # start like any other: reported, retried with backoff, never a dead task
                    driver = cls(dev, ctx)  # type: ignore[call-arg]
                    slot.driver = driver
                    self.hub.register_points(driver.points())
                    await driver.start()
                finally:
                    slot.first_start.set()
                async for batch in driver.stream():
                    self.hub.ingest(batch)
                if self.stopping.is_set():
                    return
                raise RuntimeError("driver stream ended")
            except asyncio.CancelledError:
                if driver is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(driver.stop())
                raise
            except Exception as exc:
                slot.restarts += 1
                slot.restart_times.append(time.monotonic())
                slot.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("driver failed; restarting", extra={"device": dev.id, "error": slot.last_error})
                if driver is not None:
                    with contextlib.suppress(Exception):
                        await driver.stop()
                slot.placeholder = Health(HealthState.OFFLINE, f"restarting after: {slot.last_error}")
                slot.placeholder.errors = (driver.health.errors if driver is not None else 0) + 1
                slot.driver = None
                self._report_drops(slot)  # what the failed driver dropped, before its restart
                self.hub.publish_event(
                    Event(
                        "driver_restart",
                        dev.id,
                        Severity.WARNING,
                        {
                            "error": slot.last_error,
                            "restarts": slot.restarts,
                            "dropped": self.driver_dropped.get(dev.id, 0),
                        },
                        self.clock(),
                    )
                )
                # a driver that ran fine for a while starts again from the smallest backoff
                if time.monotonic() - started > self.backoff_max:
                    slot.backoff = 0.0
                slot.backoff = min(self.backoff_max, max(self.backoff_initial, slot.backoff * 2))
                delay = slot.backoff * random.uniform(0.8, 1.2)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()

    def _writer_for(self, slot: DriverSlot) -> Callable[[str, Value], Any]:
        async def write(point: str, value: Value) -> CommandResult:
            # a write sent while the driver makes its first start (one a rule sent at start-up)
            # goes to the started driver; the hub's timeout bounds the wait
            await slot.first_start.wait()
            if self.slots.get(slot.config.id) is not slot:
                return CommandResult(
                    point_id(slot.config.id, point),
                    value,
                    CommandStatus.FAILED,
                    "device was stopped (removed or changed by a reload, or the gateway stopping)",
                )
            if slot.driver is None:
                return CommandResult(
                    point_id(slot.config.id, point), value, CommandStatus.FAILED, "device is restarting"
                )
            return await slot.driver.write(point, value)

        return write

    # ------------------------------------------------------------ status
    def devices_status(self) -> list[dict[str, Any]]:
        out = []
        for dev in self.site.devices:
            slot = self.slots.get(dev.id)
            health = slot.health.as_dict() if slot else {"state": "stopped", "reason": "disabled"}
            out.append(
                {
                    "id": dev.id,
                    "name": dev.name,
                    "driver": dev.driver,
                    "profile": dev.profile,
                    "health": health,
                    "restarts": slot.restarts if slot else 0,
                    "last_error": (slot.last_error if slot else "") or health.get("reason", ""),
                    # since the gateway started, whichever driver instance dropped them
                    "dropped": self.driver_dropped.get(dev.id, 0),
                }
            )
        return out

    def build_info(self) -> dict[str, str]:
        """`version`, `config_hash`, `rules_hash`: what a fleet compares to find drift. The config
        hash is computed once per loaded site file (a scrape does not re-serialise it)."""
        raw = self.site.raw
        if self._config_hash is None or self._config_hash[0] is not raw:
            self._config_hash = (raw, buildinfo.config_hash(raw))
        return buildinfo.build_info(self._config_hash[1], self.components.values())

    def health_gate(self) -> dict[str, Any]:
        """What a rollout's health gate asks: `ready` (started and serving), `devices_started`
        (every enabled device's driver made its first start attempt, connected or not),
        `crash_looping` (the devices restarted CRASH_LOOP_RESTARTS times within CRASH_LOOP_WINDOW
        seconds), `journal_failing`; `healthy` when all of them are as they should be."""
        now = time.monotonic()
        started = all(slot.first_start.is_set() for slot in self.slots.values())
        looping = sorted(dev for dev, slot in self.slots.items() if slot.crash_looping(now))
        ready = self.ready.is_set() and not self.stopping.is_set()
        failing = bool(self.journal.failing)
        return {
            "ready": ready,
            "devices_started": started,
            "crash_looping": looping,
            "journal_failing": failing,
            "healthy": ready and started and not looping and not failing,
        }

    def status(self) -> dict[str, Any]:
        from edge.store.health import buffer_health

        counts: dict[str, int] = {}
        for d in self.devices_status():
            counts[d["health"]["state"]] = counts.get(d["health"]["state"], 0) + 1
        return {
            "site": {
                "id": self.site.site.id,
                "name": self.site.site.name,
                "timezone": self.site.site.timezone,
            },
            **self.build_info(),
            **self.health_gate(),
            # changed in the site file, waiting for a restart (the hash above is the file in force)
            "restart_pending": list(self.restart_pending),
            "uptime_s": round(self.clock() - self.started_at, 1),
            "devices": counts,
            "hub": {
                "points": len(self.hub.points),
                "received": self.hub.received,
                "journaled": self.hub.journaled,
                "events": self.hub.events,
            },
            "buffer": buffer_health(self.journal, self.site.storage),
            "clock": self.clock_trust.snapshot(),
            "components": {name: c.status() for name, c in self.components.items()},
        }
