"""The hub: latest value of every point, change detection, fan-out, and command routing.

Drivers hand it batches; it keeps the latest sample of each point, decides which samples are
journaled (deadband / report-every), appends those to the journal, and gives subscribers exactly
the journaled records — so rules evaluated live see the same data a dry-run over the journal sees.
It lives in memory and is cheap: `ingest` is on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from edge.model import (
    PRIVACY_RANK,
    CommandResult,
    CommandStatus,
    Event,
    PointInfo,
    PointType,
    Privacy,
    Reading,
    Record,
    Value,
)

Subscriber = Callable[[list[Record]], None]
Writer = Callable[[str, Value], Awaitable[CommandResult]]  # (point name within device, value)

log = logging.getLogger("edge.hub")


class Hub:
    def __init__(self, journal_append: Callable[[list[Record]], Any] | None = None) -> None:
        self._append = journal_append
        self.points: dict[str, PointInfo] = {}
        #: bumped by every registration: caches of point classes (the sinks' filters) key on it
        self.points_version = 0
        #: PRIVACY_RANK of every personal or sensitive point (public ones are absent): the journal's
        #: writer thread stores it with each reading, so it is replaced, never changed in place
        self.private_ranks: dict[str, int] = {}
        self.latest: dict[str, Reading] = {}
        self._filters: dict[str, tuple[float, float, bool]] = {}  # point -> (deadband, every, numeric)
        self._reported: dict[str, Reading] = {}  # point -> its last journaled reading
        self._subscribers: list[Subscriber] = []
        self._writers: dict[str, Writer] = {}
        #: devices that start soon (`expect_writer`): set when their writer is registered
        self._starting: dict[str, asyncio.Event] = {}
        self.received = 0  # samples received from drivers
        self.journaled = 0  # samples that passed change detection
        self.events = 0
        self.subscriber_errors = 0

    # ------------------------------------------------------------ points
    def register_points(self, infos: Iterable[PointInfo]) -> None:
        ranks = dict(self.private_ranks)
        for info in infos:
            self.points[info.id] = info
            if info.privacy == Privacy.PUBLIC:
                ranks.pop(info.id, None)
            else:
                ranks[info.id] = PRIVACY_RANK[info.privacy]
            if info.deadband > 0 or info.report_every > 0:
                numeric = info.type in (PointType.FLOAT, PointType.INT)
                self._filters[info.id] = (info.deadband, info.report_every, numeric)
            else:
                self._filters.pop(info.id, None)
        self.private_ranks = ranks
        # after the update: a filter that recomputes in between must not cache old classes
        # under the new version
        self.points_version += 1

    def restore_latest(self, readings: Iterable[Reading]) -> int:
        """Take the journal's newest readings as the latest values at start-up (registered points
        only, nothing journaled or fanned out): the UI and `/latest` show the last known value with
        its age instead of nothing, and deadband filtering continues from what was journaled."""
        n = 0
        for r in readings:
            if r.point in self.points and r.point not in self.latest:
                self.latest[r.point] = r
                if r.point in self._filters:
                    self._reported[r.point] = r
                n += 1
        return n

    def erase_latest(self, points: Iterable[str]) -> int:
        """The latest values of `points` read as erased from now on (a null value, its time and
        quality kept, as the journal's history shows a reading whose subject was forgotten), in
        what the UI and `/latest` serve and in what change detection compares the next sample
        with: a forgotten plate is not kept in memory until the next car. Returns how many."""
        n = 0
        for point in points:
            r = self.latest.get(point)
            if r is None or r.value is None:
                continue
            erased = r._replace(value=None)
            self.latest[point] = erased
            if point in self._reported:
                self._reported[point] = erased
            n += 1
        return n

    def unregister_device(self, device_id: str) -> None:
        prefix = device_id + "."
        self.private_ranks = {p: r for p, r in self.private_ranks.items() if not p.startswith(prefix)}
        for pid in [p for p in self.points if p.startswith(prefix)]:
            self.points.pop(pid, None)
            self._filters.pop(pid, None)
            self._reported.pop(pid, None)
            self.latest.pop(pid, None)
        self._writers.pop(device_id, None)
        starting = self._starting.pop(device_id, None)
        if starting is not None:  # a write waiting for it finds it gone
            starting.set()

    # ------------------------------------------------------------ ingest (hot path)
    def ingest(self, batch: Sequence[Record]) -> list[Record]:
        """Take a batch from a driver (or a rule); returns the records that were journaled.

        One loop with the change detection inlined: a method call per filtered reading and a
        tuple per journaled one cost a quarter of the hub's time at 10,000 points."""
        latest = self.latest
        filters = self._filters
        reported = self._reported
        out: list[Record] = []
        append = out.append
        events = 0
        for rec in batch:
            if type(rec) is Reading:
                point = rec.point
                latest[point] = rec
                f = filters.get(point)
                if f is not None:
                    last = reported.get(point)
                    if last is not None and last.quality == rec.quality:
                        deadband, every, numeric = f
                        value, prev = rec.value, last.value
                        if numeric and deadband > 0 and value is not None and prev is not None:
                            same = abs(value - prev) <= deadband  # type: ignore[operator]
                        else:
                            same = value == prev
                        if same and not (every > 0 and rec.ts - last.ts >= every):
                            continue
                    reported[point] = rec
                append(rec)
            else:
                append(rec)
                events += 1
        self.events += events
        self.received += len(batch) - events
        if not out:
            return out
        self.journaled += len(out) - events
        if self._append is not None:
            self._append(out)
        for sub in self._subscribers:
            try:
                sub(out)
            except Exception:  # a subscriber bug must never stop ingest
                self.subscriber_errors += 1
                log.exception("hub subscriber %r failed", sub)
        return out

    def publish_event(self, event: Event) -> None:
        self.ingest([event])

    # ------------------------------------------------------------ fan-out
    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call `fn(records)` with every journaled batch, synchronously. Returns an unsubscribe."""
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    # ------------------------------------------------------------ commands
    def expect_writer(self, device_id: str) -> None:
        """Say that `device_id` is configured and starts soon: until its writer is registered, a
        write to it waits for it, within the write's timeout, instead of failing as not running.
        At start-up the components start before the devices, and a rule's `for:` or `no_data`
        deadline that passed while the gateway was stopped fires then."""
        if device_id not in self._writers:
            self._starting.setdefault(device_id, asyncio.Event())

    def register_writer(self, device_id: str, writer: Writer) -> None:
        self._writers[device_id] = writer
        starting = self._starting.pop(device_id, None)
        if starting is not None:
            starting.set()

    async def _writer_of(self, device: str, timeout: float) -> Writer | None:
        """The device's writer; for a device about to start (`expect_writer`), once it is
        registered, waiting at most `timeout` seconds."""
        writer = self._writers.get(device)
        starting = self._starting.get(device)
        if writer is None and starting is not None and timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await starting.wait()
            writer = self._writers.get(device)
        return writer

    async def write(
        self,
        point_id: str,
        value: Value,
        *,
        source: str,
        timeout: float = 10.0,
        privacy: Privacy | None = None,
    ) -> CommandResult:
        """Write a point through its driver; the outcome is returned and journaled as a `command`
        event. `privacy`: the class of the data `value` was derived from (a rule's firing), when
        above the point's own: the event, which quotes the value, carries it."""
        start = time.monotonic()
        device, _, name = point_id.partition(".")
        info = self.points.get(point_id)
        if info is None:
            result = CommandResult(
                point_id, value, CommandStatus.REJECTED, f"unknown point {point_id!r}", source
            )
        elif not info.writable:
            result = CommandResult(point_id, value, CommandStatus.REJECTED, "point is not writable", source)
        else:
            try:
                value = coerce_value(info, value)
            except ValueError as exc:
                result = CommandResult(point_id, value, CommandStatus.REJECTED, str(exc), source)
            else:
                writer = await self._writer_of(device, timeout)
                # what is left of the timeout after waiting for a starting device
                left = timeout - (time.monotonic() - start)
                if writer is None:
                    why = f"device did not start within {timeout:g}s" if device in self._starting else ""
                    result = CommandResult(
                        point_id, value, CommandStatus.FAILED, why or "device is not running"
                    )
                else:
                    try:
                        async with asyncio.timeout(left):
                            result = await writer(name, value)
                    except TimeoutError:
                        result = CommandResult(
                            point_id, value, CommandStatus.TIMEOUT, f"no answer within {timeout:g}s"
                        )
                    except Exception as exc:
                        result = CommandResult(
                            point_id, value, CommandStatus.FAILED, f"{type(exc).__name__}: {exc}"
                        )
                result.point = point_id
                result.source = source
        result.duration_ms = (time.monotonic() - start) * 1000
        self.publish_event(result.as_event(privacy))
        return result


class OutOfRange(ValueError):
    """A whole number too large for any int point."""


def coerce_value(info: PointInfo, value: Value) -> Value:
    """Convert a written value to the point's type, or raise ValueError saying what is accepted.

    A numeric point takes finite numbers only: NaN and infinities ("nan", "inf", "-Infinity", a
    rule's `.nan`) are refused here, the one place every write passes, so no driver sees them."""
    t = info.type
    try:
        if t == PointType.BOOL:
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "on", "off"):
                return value.lower() in ("true", "1", "on")
            raise ValueError
        if t == PointType.INT:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            whole = int(value)  # type: ignore[arg-type]
            if not INT_MIN <= whole <= INT_MAX:
                # no register or driver holds more, and an answer quoting it could not be encoded
                raise OutOfRange(
                    f"{_shown(value)} is out of range for {info.id}: "
                    f"an int point takes a whole number from {INT_MIN} to {INT_MAX} (64 bits)"
                )
            return whole
        if t == PointType.FLOAT:
            if isinstance(value, bool) or value is None:
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        return str(value)
    except OutOfRange:
        raise
    except (ValueError, TypeError, OverflowError):
        shown = _shown(value)
        if t in (PointType.INT, PointType.FLOAT) and _not_finite(value):
            raise ValueError(f"{shown} is not a finite number: {info.id} takes a finite {t}") from None
        raise ValueError(f"{shown} is not a valid {t} for {info.id}: {_ACCEPTS.get(t, '')}") from None


#: the whole numbers an int point takes: 64 bits, signed or unsigned (a Modbus int64 or uint64)
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

# what a point of each type takes, said with a refused write
_ACCEPTS = {
    PointType.INT: "send a whole number",
    PointType.FLOAT: "send a finite number",
    PointType.BOOL: "send true or false",
}


def _shown(value: Value) -> str:
    """A refused value as the JSON that sent it (null, true, "text"); a huge integer by its size."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _not_finite(value: Value) -> bool:
    """Whether `value` reads as NaN or an infinity, or is too large for a float."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return False
    try:
        return not math.isfinite(float(value))
    except OverflowError:
        return True
    except ValueError:
        return False
