"""The Driver contract: the one interface between the runtime and every protocol.

A driver owns its connections and its schedule. The runtime:
  1. builds it with `DriverClass(device, ctx)` (device: the validated config model of the entry),
  2. reads `points()` for the metadata of every point it will report,
  3. awaits `start()`, then consumes `stream()` — an async iterator of *batches* (lists) of
     readings and events; batches keep the per-sample cost low on the hot path,
  4. routes commands to `write(point_name, value)`,
  5. reads `health` (online / degraded / offline with a reason) whenever it likes,
  6. awaits `stop()` on shutdown or before a restart.

Optional: `async def read(self, point: str) -> Reading` reads one point from the device *now*,
outside the poll schedule (the commissioning test-read: "does this meter answer?"). It returns the
reading without emitting it (a look, not data) and raises `DeviceReadError` with a message a
technician can act on when the device does not answer or refuses. `Driver.read` raises
`NotImplementedError`; a driver that overrides it reads on demand, which `reads_on_demand(driver)`
tells the caller.

If `stream()` raises, the supervisor stops the driver, waits with backoff and starts a new instance;
a driver never takes the process down. Drivers never block the event loop: blocking work
(OpenCV, serial I/O without asyncio support) runs in a thread.

`BaseDriver` implements the queue plumbing, so a driver only calls `self.emit(batch)` and
`self.set_health(...)`.

The contract is this module alone: the device and point models a driver's config extends
(`DeviceConfig`, `PointConfig`), the context with the services a driver may use (`DriverContext`:
typed, no lookup by name), and the capabilities other parts of the site may ask a driver for
(`Snapshots`: a rule's snapshot action reaches a camera through it). A driver imports nothing else
of the core besides `edge.model`, `edge.units` and `edge.validation` (a plugin's HTTP routes and
`edge` commands, beside its driver, use the API's and the CLI's helpers).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import AliasChoices, BaseModel, Field

from edge.model import (
    CommandResult,
    Event,
    Health,
    HealthState,
    PointInfo,
    PointType,
    Privacy,
    Reading,
    Record,
    Severity,
    Value,
    point_id,
)
from edge.units import Duration
from edge.validation import DeviceId, PointName, Strict

if TYPE_CHECKING:
    from edge.store.blobs import BlobStore


# ---------------------------------------------------------------- config bases
class PointConfig(Strict):
    """Fields every driver's points share; a driver subclasses it with its own keys."""

    name: PointName
    type: PointType = PointType.FLOAT
    unit: str = ""
    writable: bool = False
    privacy: Privacy = Privacy.PUBLIC
    deadband: float = Field(0.0, ge=0)
    report_every: Duration = 0.0
    description: str = ""
    #: decimals to show (UI, CLI); `decimals:` is accepted too. None: derived from the unit
    precision: int | None = Field(None, ge=0, le=10, validation_alias=AliasChoices("precision", "decimals"))

    def point_type(self) -> PointType:
        """The engineering type of the values (drivers whose `type` means more override this)."""
        return self.type


class DeviceConfig(Strict):
    """Fields every device entry shares; a driver subclasses it (and its `points`)."""

    id: DeviceId
    driver: str
    name: str = ""
    enabled: bool = True
    profile: str | None = None
    description: str = ""

    def exclusive(self) -> list[tuple[str, str]]:
        """(key, value) pairs no other enabled device of the site may share: one physical device
        entered twice (a BLE address) would split its data between two ids."""
        return []

    def point_infos(self) -> list[PointInfo]:
        """PointInfo for every configured point (drivers with a `points:` list get this for free)."""
        out = []
        for p in getattr(self, "points", []) or []:
            out.append(
                PointInfo(
                    id=point_id(self.id, p.name),
                    device=self.id,
                    name=p.name,
                    type=p.point_type(),
                    unit=p.unit,
                    writable=p.writable,
                    privacy=p.privacy,
                    deadband=p.deadband,
                    report_every=p.report_every,
                    description=p.description,
                    precision=p.precision,
                )
            )
        return out


class DeviceReadError(Exception):
    """An on-demand read got no usable value: no answer, refused by the device (an exception response), not started.

    The message is shown to the technician as it is, so it says what happened and where.
    """

    def __init__(self, message: str, *, no_answer: bool = False) -> None:
        super().__init__(message)
        self.no_answer = no_answer  # nothing came back (timeout, connection refused), not a refusal


def _no_registration(infos: Iterable[PointInfo]) -> None:
    """Outside a runtime (a probe, a test) nobody keeps point metadata: found points go nowhere."""


def _no_drop_report(batch: Sequence[Record]) -> None:
    """Outside a runtime nobody reports drops: the driver's own `dropped` still counts them."""


@dataclass
class DriverContext:
    """What the runtime hands a driver besides its own config."""

    site_id: str
    data_dir: str
    log: logging.Logger
    clock: Callable[[], float]
    #: announce points found at run time (a BLE sensor reporting an object not in its map), so
    #: their metadata (type, unit, privacy) is known before their first reading arrives
    register_points: Callable[[Iterable[PointInfo]], None] = _no_registration
    #: where snapshots and other binary objects go (None: `blobs/` under `data_dir`)
    blobs: BlobStore | None = field(default=None)
    #: see the site's records: `subscribe(fn)` calls `fn(records)` with every journaled batch
    #: (every device's readings and events), synchronously on the event loop's hot path, so `fn`
    #: only looks (a type and a source compared) and never blocks; returns the unsubscribe, which
    #: the driver calls in `stop()`. None outside a runtime (a probe, a test): nothing to see
    subscribe: Callable[[Callable[[list[Record]], None]], Callable[[], None]] | None = None
    #: look back at the site's journal: `await recent_events(source, since)` gives the journaled
    #: events of device `source` with ts >= since, newest first, payloads opened (sealed ones
    #: decrypted in memory, a forgotten subject's as `{"erased": true}`), at most a few dozen
    #: (RECENT_EVENTS of `edge.runtime`); everything ingested before the call is included. It
    #: reads in a worker thread and may raise (the journal closed, a read error). None outside a
    #: runtime: no journal to look at
    recent_events: Callable[[str, float], Awaitable[list[Event]]] | None = None
    #: told of every batch `BaseDriver.emit` could not queue (the runtime fell behind the
    #: driver): the runtime counts them per device for its lifetime and journals one
    #: `driver_dropped` event per burst. Called on the event loop for each dropped batch: it only
    #: counts
    report_dropped: Callable[[Sequence[Record]], None] = _no_drop_report

    def blob_store(self) -> BlobStore:
        """The site's blob store (one under `data_dir` when the runtime gave none)."""
        if self.blobs is None:
            from edge.store.blobs import BlobStore

            self.blobs = BlobStore(f"{self.data_dir}/blobs")
        return self.blobs


# ---------------------------------------------------------------- capabilities
class Snapshots:
    """Capability: the driver takes still pictures on request (a camera). A driver declares it by
    subclassing (`class CameraDriver(BaseDriver, Snapshots)`); a rule's snapshot action asks for
    it (`Runtime.driver_with(device, Snapshots)`), never for a driver type or a method name."""

    async def snapshot(
        self, reason: str, rule: str | None = None, subject: str | None = None
    ) -> dict[str, Any]:
        """Take one now; returns the payload of the `snapshot` event it emits. `subject`: the
        resident or plate the picture is about, when the record that asked for it names one.
        Raises an exception whose message says why when no picture can be taken."""
        raise NotImplementedError(f"{type(self).__name__} declares Snapshots but takes none")


class Driver(abc.ABC):
    """The contract. See the module docstring for the lifecycle."""

    #: pydantic model that validates this driver's device entries (set by each driver module).
    config_model: ClassVar[type[BaseModel]]

    @abc.abstractmethod
    def points(self) -> list[PointInfo]: ...

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    def stream(self) -> AsyncIterator[list[Record]]: ...

    @abc.abstractmethod
    async def write(self, point: str, value: Value) -> CommandResult: ...

    @property
    @abc.abstractmethod
    def health(self) -> Health: ...

    async def read(self, point: str) -> Reading:
        """Read `point` from the device now, outside the poll schedule; the reading is not emitted.

        Raises `DeviceReadError` with a clear message if the device does not answer, and
        `LookupError` for a point this device does not have. Optional: this default means
        "this driver cannot read on demand" (see `reads_on_demand`).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot read a point on demand")


class BaseDriver(Driver):
    """Queue plumbing shared by the drivers: `emit()` batches, health changes become events."""

    def __init__(self, device: Any, ctx: DriverContext, *, queue_batches: int = 1000) -> None:
        self.device = device
        self.ctx = ctx
        self.log = ctx.log
        self._health = Health()
        # Bounded: a stalled consumer must not let a driver grow memory without limit.
        self._queue: asyncio.Queue[list[Record] | None] = asyncio.Queue(maxsize=queue_batches)
        self.dropped = 0  # records this instance dropped because the runtime did not keep up
        self._failure: BaseException | None = None
        self._ended = False  # end_stream() was called: stream() ends once the queue is drained

    @property
    def id(self) -> str:
        return str(self.device.id)

    @property
    def health(self) -> Health:
        return self._health

    def emit(self, batch: Sequence[Record]) -> None:
        if not batch:
            return
        try:
            self._queue.put_nowait(list(batch))
        except asyncio.QueueFull:
            self.dropped += len(batch)
            self.ctx.report_dropped(batch)

    def set_health(self, state: HealthState, reason: str = "") -> None:
        """Change health; a change of state (other than a clean start) is an event in the journal."""
        previous = self._health.state
        if not self._health.set(state, reason) or previous == state:
            return
        if previous == HealthState.STARTING and state == HealthState.ONLINE:
            return
        severity = Severity.WARNING if state == HealthState.OFFLINE else Severity.INFO
        self.emit(
            [
                Event(
                    kind="device_state",
                    source=self.id,
                    severity=severity,
                    payload={"state": str(state), "previous": str(previous), "reason": reason},
                    ts=self.ctx.clock(),
                )
            ]
        )

    def fail(self, exc: BaseException) -> None:
        """Make `stream()` raise `exc`: the supervisor then restarts this driver with backoff."""
        self._failure = exc
        self.end_stream()

    def end_stream(self) -> None:
        """Make `stream()` finish (used by stop()) once it has given what was queued before."""
        self._ended = True
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass  # no room for the marker: stream() sees `_ended` when it has drained the queue

    async def stream(self) -> AsyncIterator[list[Record]]:
        queue = self._queue
        while not (self._ended and queue.empty()):
            batch = await queue.get()
            if batch is None:
                break
            yield batch
        if self._failure is not None:
            raise self._failure


def reads_on_demand(driver: object) -> bool:
    """Whether `driver` implements the optional on-demand `read(point)` of the contract."""
    reader = getattr(type(driver), "read", None)
    return callable(reader) and reader is not Driver.read
