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
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from edge.model import (
    CommandResult,
    Event,
    Health,
    HealthState,
    PointInfo,
    Reading,
    Record,
    Severity,
    Value,
)


class DeviceReadError(Exception):
    """An on-demand read got no usable value: no answer, refused (Modbus exception), not started.

    The message is shown to the technician as it is, so it says what happened and where.
    """

    def __init__(self, message: str, *, no_answer: bool = False) -> None:
        super().__init__(message)
        self.no_answer = no_answer  # nothing came back (timeout, connection refused), not a refusal


@dataclass
class DriverContext:
    """What the runtime hands a driver besides its own config."""

    site_id: str
    data_dir: str
    log: logging.Logger
    clock: Callable[[], float]
    # Extra services a driver may use (e.g. the blob store for cameras); keyed by name.
    services: dict[str, Any] = field(default_factory=dict)


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
        self.dropped = 0  # records dropped because the runtime did not keep up (counted, reported)
        self._failure: BaseException | None = None

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
        """Make `stream()` finish (used by stop())."""
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass

    async def stream(self) -> AsyncIterator[list[Record]]:
        while True:
            batch = await self._queue.get()
            if batch is None:
                if self._failure is not None:
                    raise self._failure
                return
            yield batch


def reads_on_demand(driver: object) -> bool:
    """Whether `driver` implements the optional on-demand `read(point)` of the contract."""
    reader = getattr(type(driver), "read", None)
    return callable(reader) and reader is not Driver.read
