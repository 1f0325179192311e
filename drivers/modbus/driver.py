"""The Modbus driver: one poll loop per device, points as views over the last poll, and writes.

Coordinator style: the device's points are grouped by poll interval, each group read with the
planner's coalesced requests. A poll that gets no answer marks every point of the device stale
(last value kept, quality stale) in one batch and takes the device offline with the reason; the
link's capped backoff brings it back by itself, and on a shared bus, where the connection stays
up, the silent unit backs off itself (one probe, no retry) so it does not starve the others. Exception responses make only the affected points
bad (device degraded); an "illegal data address" answer to a merged read splits the request and
the split is remembered for a number of cycles, then the merged read is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import time
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

from drivers.modbus import codec
from drivers.modbus.config import BIT_TABLES, ModbusDevice, ModbusPoint
from drivers.modbus.planner import Request, SplitMemory, plan, split_request
from drivers.modbus.transport import WRITE, DeviceException, Link, LinkError, acquire, release
from edge.driver import BaseDriver, DeviceReadError, DriverContext
from edge.model import (
    CommandResult,
    CommandStatus,
    HealthState,
    PointInfo,
    Quality,
    Reading,
    Record,
    Value,
    point_id,
)

READ_METHODS = {
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
    "holding": "read_holding_registers",
    "input": "read_input_registers",
}


class ModbusDriver(BaseDriver):
    config_model = ModbusDevice

    def __init__(self, device: ModbusDevice, ctx: DriverContext) -> None:
        super().__init__(device, ctx)
        self.device: ModbusDevice = device
        self.by_name: dict[str, ModbusPoint] = {p.name: p for p in device.points}
        # how to decode each planned request, built once per request of the plan (see _reader)
        self._readers: dict[int, tuple[Request, _RequestReader]] = {}
        self.splits = SplitMemory()
        self.refused: dict[str, str] = {}  # point -> reason (single point refused by the device)
        self.groups: dict[float, list[ModbusPoint]] = {}
        for p in device.points:
            self.groups.setdefault(p.poll or device.poll, []).append(p)
        self._plans: dict[float, list[Request]] = {}
        self.link: Link | None = None
        # this device's own timeout and retries, also on a bus shared with other devices
        self.timing: dict[str, Any] = {"timeout": device.timeout, "retries": device.retries}
        self._task: asyncio.Task[None] | None = None
        self.last_values: dict[str, Value] = {}
        self.cycles = 0
        self.requests_last_cycle = 0
        self._wrong_seen = 0  # the link's wrong answers to this unit already counted in errors
        self._stopping = False
        # A unit that stops answering on a shared bus (RS-485, a serial server) is asked again only
        # after a backoff, with one request and no retry: polled at full cost every cycle, a few
        # dead meters took the bus from the barrier controller next to them.
        self._backs_off = device.connection.transport != "tcp"
        self._silent_backoff = 0.0  # seconds; 0 while the unit answers
        self._next_probe = 0.0  # monotonic time of the next poll of a silent unit
        self.polls_skipped = 0  # polls not sent because the unit was backing off

    @property
    def counters(self) -> dict[str, int]:
        """What the connection threw away (in /metrics as `edge_driver_count_total`): answers to
        this unit that did not match their request, and — for the whole bus — bytes discarded
        while the line settled after a failed request, and noise skipped before RTU answers."""
        link = self.link
        if link is None:
            return {}
        counters = {
            "wrong_answers": link.wrong_by_unit.get(self.device.unit, 0),
            "late_bytes_discarded": link.discarded,
            "noise_bytes_skipped": link.noise,
        }
        if self.polls_skipped:
            counters["polls_skipped_silent"] = self.polls_skipped
        return counters

    def points(self) -> list[PointInfo]:
        return self.device.point_infos()

    def plan_for(self, interval: float) -> list[Request]:
        if interval not in self._plans:
            self._plans[interval] = self._plan(self.groups[interval])
        return self._plans[interval]

    def _plan(self, points: list[ModbusPoint]) -> list[Request]:
        d = self.device
        return plan(
            points,
            max_gap=d.max_gap,
            max_gap_bits=d.max_gap_bits,
            max_registers=d.max_registers,
            max_bits=d.max_bits,
            splits=self.splits,
        )

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        d = self.device
        self.link = acquire(d.connection, timeout=d.timeout, retries=d.retries, reconnect_max=d.reconnect_max)
        self._wrong_seen = self.link.wrong_by_unit.get(d.unit, 0)
        self._task = asyncio.create_task(self._poll_loop(), name=f"modbus:{self.id}")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            # Python 3.11's asyncio.timeout/wait_for can swallow a cancellation that lands as a
            # timeout fires; cancel again until the loop has really ended, or stop() would hang.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        if self.link is not None:
            release(self.link)
            self.link = None
        self.set_health(HealthState.STOPPED, "stopped")
        self.end_stream()

    async def _poll_loop(self) -> None:
        due = dict.fromkeys(self.groups, time.monotonic())
        try:
            while not self._stopping:
                now = time.monotonic()
                for interval in sorted(due):
                    if due[interval] <= now:
                        await self.poll_group(interval)
                        # next slot on the fixed grid; skip slots missed by a slow cycle
                        due[interval] += interval * max(
                            1, int((time.monotonic() - due[interval]) / interval) + 1
                        )
                wake = min(due.values()) if due else now + 3600
                await asyncio.sleep(max(0.0, wake - time.monotonic()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must restart the driver, not hang it
            self.log.exception("modbus poll loop failed")
            self.fail(exc)

    # ------------------------------------------------------------ polling
    async def poll_group(self, interval: float) -> None:
        """Read every point of one poll group and emit the readings (one batch)."""
        assert self.link is not None
        probing = False
        if self._silent_backoff:
            if time.monotonic() < self._next_probe:
                self.polls_skipped += 1  # its points are stale already; the reason says when
                return
            probing = True  # one request, no retry: the unit answers again or backs off further
        if self.splits.expire(self.cycles):
            self._plans.clear()  # a split's time is up: try the merged read again
        ts = self.ctx.clock()
        # Answers are decoded after the last request, in request order: decoding each one between
        # two requests took 2.1-2.4 ms per 1,000 values in bench.modbus, all of them together
        # 1.3-1.7 ms (the same answers decoded again in a loop: 0.5 ms; the loop's I/O cools it).
        answers: list[tuple[Request, list[Any] | str]] = []
        requests = 0
        pending = list(self.plan_for(interval))
        link, unit, timing = self.link, self.device.unit, self.timing
        while pending:
            req = pending.pop(0)
            requests += 1
            try:
                # awaited here, not in a helper: each coroutine level is paid again at every resume
                if probing:
                    probing = False
                    resp = await link.call(
                        unit, READ_METHODS[req.table], req.start, count=req.count, **{**timing, "retries": 0}
                    )
                else:
                    resp = await link.call(
                        unit, READ_METHODS[req.table], req.start, count=req.count, **timing
                    )
                answers.append((req, self._values(req, resp)))
            except LinkError as exc:
                self._decode(answers, ts)  # the values that did arrive are the last known ones
                self._count_wrong_answers()
                self._went_silent(str(exc), ts, back_off=exc.no_answer and self._backs_off)
                self.requests_last_cycle = requests
                return
            except DeviceException as exc:
                group = self.groups[interval]
                if (
                    exc.code == 2
                    and self.splits.proven(req, group)
                    and split_request(req, group, self.splits, self.cycles)
                ):
                    self._plans.clear()
                    self.log.info("device refused %s; split, the merged read tried again later", req)
                    # re-read the points of this request, and only those, with the new cut: the
                    # group's new plan may merge them with points read already or still pending
                    # in this cycle, which would then be read (and journaled) twice
                    pending = self._plan([self.by_name[n] for n in req.points]) + pending
                    continue
                answers.append((req, f"{READ_METHODS[req.table]} {req.start}+{req.count}: {exc}"))
        splits = self.splits
        if splits.on_trial or splits.suspects:
            for req, answer in answers:
                if not isinstance(answer, str):
                    splits.settle(req)  # answered: a split on trial or a single refusal is forgotten
        batch, errors = self._decode(answers, ts)
        self._count_wrong_answers()
        self.requests_last_cycle = requests
        self.cycles += 1
        self._silent_backoff = 0.0
        self.emit(batch)
        self.health.last_ok = ts
        if errors:
            self.health.errors += len(errors)
            self.set_health(HealthState.DEGRADED, "; ".join(errors[:3]))
        else:
            self.set_health(HealthState.ONLINE, "")

    def _count_wrong_answers(self) -> None:
        """Answers the link refused as not matching their request count as errors of the device,
        also when the retry then got the right one."""
        assert self.link is not None
        wrong = self.link.wrong_by_unit.get(self.device.unit, 0)
        if wrong != self._wrong_seen:
            self.health.errors += wrong - self._wrong_seen
            self._wrong_seen = wrong

    def _decode(
        self, answers: list[tuple[Request, list[Any] | str]], ts: float
    ) -> tuple[list[Record], list[str]]:
        """The readings of a cycle's answers (a refused request: its reason), and the errors."""
        batch: list[Record] = []
        errors: list[str] = []
        for req, answer in answers:
            if isinstance(answer, str):
                errors.append(answer)
                batch.extend(Reading(ts, point_id(self.id, name), None, Quality.BAD) for name in req.points)
            else:
                self._decode_request(req, answer, ts, batch, errors)
        return batch, errors

    def _values(self, req: Request, resp: Any) -> list[Any]:
        """The `req.count` values of a request's answer. An answer holding more or fewer is the
        answer to another request: an error, never values (bits come padded to a whole byte)."""
        values = resp.bits if req.table in BIT_TABLES else resp.registers
        if len(values) != req.count:
            padded = req.table in BIT_TABLES and len(values) == (req.count + 7) // 8 * 8
            if not padded:
                raise LinkError(
                    f"wrong answer: {len(values)} values to a read of {req.count} at {req.table} {req.start}"
                )
            values = values[: req.count]
        return list(values) if not isinstance(values, list) else values

    def _reader(self, req: Request) -> _RequestReader:
        # keyed by identity: a plan's requests live as long as the plan, and hashing a Request
        # (a Python-level dataclass hash over its point names) cost more than the lookup
        known = self._readers.get(id(req))
        if known is not None and known[0] is req:
            return known[1]
        if len(self._readers) > 4 * len(self.device.points) + 64:
            self._readers.clear()  # plans changed by splits: drop readers of requests gone
        reader = _RequestReader(self.id, req, [self.by_name[n] for n in req.points])
        self._readers[id(req)] = (req, reader)  # holding req keeps its id from being reused
        return reader

    def _decode_request(
        self, req: Request, values: list[Any], ts: float, batch: list[Record], errors: list[str]
    ) -> None:
        """Decode every point of one answered request into `batch`, in the request's point order.

        Fixed-size numbers (nearly every point of a meter) come from the answer packed to bytes
        once and unpacked in C — all at once when they share one word order, and then turned into
        readings without a Python-level step per value unless one is NaN; bits, strings and bools
        take `_decode_point`. Every path gives the values `codec.decode` gives."""
        reader = self._reader(req)
        if reader.unpack_all is not None:
            raws: Sequence[Any] = reader.unpack_all(codec.pack_registers(values, reader.swapped_all))
            scales = reader.scales
            if scales is not None:  # codec.scale_value; round() passes inf and NaN through
                raws = [
                    r if s is None else round(r * s + o, 9)
                    for r, s, o in zip(raws, scales, reader.offsets, strict=True)
                ]
            if not (reader.may_be_nan and not all(map(math.isfinite, raws))):
                self.last_values.update(zip(reader.names, raws, strict=True))
                batch.extend(map(_reading, zip(repeat(ts), reader.pids, raws, repeat(Quality.GOOD))))
                return
            self._decode_each(reader, req, values, ts, batch, errors, raws)
            return
        self._decode_each(reader, req, values, ts, batch, errors, None)

    def _decode_each(
        self,
        reader: _RequestReader,
        req: Request,
        values: list[Any],
        ts: float,
        batch: list[Record],
        errors: list[str],
        scaled: Sequence[Any] | None,
    ) -> None:
        """Point by point: `scaled` holds the values already unpacked and scaled, if any."""
        if scaled is None and reader.needs_bytes:
            be = codec.pack_registers(values)
            le = codec.pack_registers(values, little=True) if reader.needs_swapped else be
        last = self.last_values
        good, bad = Quality.GOOD, Quality.BAD
        for i, (pid, p, unpack, swapped, at, scale, offset) in enumerate(reader.entries):
            if scaled is not None:
                value = scaled[i]
            elif unpack is None:
                batch.append(self._decode_point(p, req, values, ts, errors))
                continue
            else:
                value = unpack(le if swapped else be, at)[0]
                if scale is not None:  # codec.scale_value; round() passes inf and NaN through
                    value = round(value * scale + offset, 9)
            if not math.isfinite(value):  # NaN: the device says "no value"; ±inf: out of its range
                batch.append(_reading((ts, pid, None, bad)))
                continue
            last[p.name] = value
            batch.append(_reading((ts, pid, value, good)))

    def _decode_point(
        self,
        p: ModbusPoint,
        req: Request,
        values: list[Any],
        ts: float,
        errors: list[str],
        *,
        remember: bool = True,
    ) -> Reading:
        pid = point_id(self.id, p.name)
        off = p.address - req.start
        try:
            if p.table in BIT_TABLES:
                value: Any = bool(values[off])
            else:
                value = codec.decode(
                    values[off : off + p.count],
                    str(p.type),
                    p.order,
                    scale=p.scale,
                    offset=p.offset,
                    bit=p.bit,
                )
                if isinstance(value, float) and value != value:  # NaN: the device says "no value"
                    return Reading(ts, pid, None, Quality.BAD)
        except codec.DecodeError as exc:
            errors.append(f"{p.name}: {exc}")
            return Reading(ts, pid, None, Quality.BAD)
        if remember:
            self.last_values[p.name] = value
        return Reading(ts, pid, value, Quality.GOOD)

    def _went_silent(self, reason: str, ts: float, *, back_off: bool = False) -> None:
        """No answer: every point of the device is stale at once; the device is offline. On a
        shared bus the unit is then polled again only after a backoff: twice its shortest poll
        interval, doubling at each probe it does not answer, up to `reconnect_max`, jittered."""
        self.health.errors += 1
        if back_off:
            first = 2 * min(self.groups, default=self.device.poll)
            self._silent_backoff = min(self.device.reconnect_max, max(first, self._silent_backoff * 2))
            delay = self._silent_backoff * random.uniform(0.8, 1.2)
            self._next_probe = time.monotonic() + delay
            at = time.strftime("%H:%M:%S", time.gmtime(ts + delay))
            reason = f"{reason}; next try at {at} UTC (in {delay:.1f} s)"
        if self.health.state != HealthState.OFFLINE:
            self.emit(
                [
                    Reading(ts, point_id(self.id, p.name), self.last_values.get(p.name), Quality.STALE)
                    for p in self.device.points
                ]
            )
        self.set_health(HealthState.OFFLINE, reason)

    # ------------------------------------------------------------ on-demand read
    async def read(self, point: str) -> Reading:
        """One request for just this point, now, with write priority: it waits for the request in
        flight, never for the rest of a poll cycle. Not emitted and not remembered as the point's
        last value: a commissioning read is a look, not data."""
        p = self.by_name.get(point)
        if p is None:
            raise LookupError(f"device {self.id} has no point {point!r}")
        if self.link is None:
            raise DeviceReadError(f"device {self.id} is not started")
        req = Request(p.table, p.address, p.count, (p.name,))
        what = f"{READ_METHODS[p.table]} {p.address}+{p.count}"
        try:
            values = await self._read_priority(req, retry_now=True)
        except LinkError as exc:
            raise DeviceReadError(f"{self.id} did not answer {what}: {exc}", no_answer=True) from None
        except DeviceException as exc:
            raise DeviceReadError(f"{self.id} refused {what}: Modbus {exc}") from None
        self._silent_backoff = 0.0  # it answers: poll it again from the next cycle
        errors: list[str] = []
        got = self._decode_point(p, req, values, self.ctx.clock(), errors, remember=False)
        if errors:
            raise DeviceReadError(f"{self.id} answered {what} with {values!r}: {errors[0]}")
        return got

    # ------------------------------------------------------------ writes
    async def write(self, point: str, value: Value) -> CommandResult:
        pid = point_id(self.id, point)
        p = self.by_name.get(point)
        if p is None:
            return CommandResult(pid, value, CommandStatus.REJECTED, f"unknown point {point!r}")
        if not p.writable:
            return CommandResult(pid, value, CommandStatus.REJECTED, "point is not writable")
        if self.link is None:
            return CommandResult(pid, value, CommandStatus.FAILED, "device is not started")
        if p.type == "bit" and p.table != "coil":
            # the register's other bits are read and written back: a second write to the same
            # register (another bit point) in between would be lost, so one at a time
            async with self.link.register_lock(self.device.unit, p.address):
                return await self._write(p, pid, value)
        return await self._write(p, pid, value)

    async def _write(self, p: ModbusPoint, pid: str, value: Value) -> CommandResult:
        assert self.link is not None
        args: tuple[Any, ...]
        try:
            if p.table == "coil":
                regs: list[int] = []
                method, args = "write_coil", (p.address, bool(value))
            elif p.type == "bit":
                regs = await self._bit_in_register(p, bool(value))
                method, args = "write_register", (p.address, regs[0])
            else:
                regs = codec.encode(
                    value, str(p.type), p.order, scale=p.scale, offset=p.offset, length=p.length, finite=True
                )
                if len(regs) == 1 and not p.write_multiple:
                    method, args = "write_register", (p.address, regs[0])
                else:
                    method, args = "write_registers", (p.address, regs)
        except ValueError as exc:
            return CommandResult(pid, value, CommandStatus.REJECTED, str(exc))
        except (LinkError, DeviceException) as exc:
            return CommandResult(pid, value, CommandStatus.FAILED, f"read before write: {exc}")
        try:
            # a command is a person or a rule asking now: connect at once, even while the link
            # backs off after an outage (the device may be back long before the next attempt)
            await self.link.call(
                self.device.unit, method, *args, priority=WRITE, retry_now=True, **self.timing
            )
            reported: Value = value
            if p.verify:
                req = Request(p.table, p.address, p.count, (p.name,))
                errors: list[str] = []
                answer = await self._read_priority(req, retry_now=True)
                back = self._decode_point(p, req, answer, self.ctx.clock(), errors)
                stored = _as_stored(p, value, regs)
                if errors or back.value != stored:
                    expected = repr(value) if stored == value else f"{stored!r} (for {value!r})"
                    return CommandResult(
                        pid,
                        value,
                        CommandStatus.FAILED,
                        f"read-back gave {back.value!r}, expected {expected}",
                    )
                reported = back.value
        except LinkError as exc:
            status = CommandStatus.TIMEOUT if exc.no_answer else CommandStatus.FAILED
            return CommandResult(pid, value, status, str(exc))
        except DeviceException as exc:
            return CommandResult(pid, value, CommandStatus.FAILED, f"device refused the write: {exc}")
        self._silent_backoff = 0.0  # it answers: poll it again from the next cycle
        self.last_values[p.name] = reported
        self.emit([Reading(self.ctx.clock(), pid, reported, Quality.GOOD)])
        return CommandResult(pid, value, CommandStatus.OK)

    async def _read_priority(self, req: Request, *, retry_now: bool = False) -> list[Any]:
        assert self.link is not None
        resp = await self.link.call(
            self.device.unit,
            READ_METHODS[req.table],
            req.start,
            count=req.count,
            priority=WRITE,
            retry_now=retry_now,
            **self.timing,
        )
        return list(self._values(req, resp))

    async def _bit_in_register(self, p: ModbusPoint, on: bool) -> list[int]:
        """Read-modify-write of one bit: the other 15 bits of the register keep their state."""
        (reg,) = await self._read_priority(Request(p.table, p.address, 1, (p.name,)), retry_now=True)
        mask = 1 << (p.bit or 0)
        return [(reg | mask) if on else (reg & ~mask)]


class _RequestReader:
    """Per point of one request: (point id, point, unpack_from or None, reads the byte-swapped copy,
    byte offset, scale or None when the raw value is the value, offset)."""

    __slots__ = (
        "entries",
        "may_be_nan",
        "names",
        "needs_bytes",
        "needs_swapped",
        "offsets",
        "pids",
        "scales",
        "swapped_all",
        "unpack_all",
    )

    def __init__(self, device_id: str, req: Request, points: list[ModbusPoint]) -> None:
        self.entries: list[tuple[str, ModbusPoint, Any, bool, int, float | None, float]] = []
        for p in points:
            fast = None if p.table in BIT_TABLES else codec.unpacker(str(p.type), p.order)
            unpack, swapped = fast if fast is not None else (None, False)
            scaled = p.scale != 1 or p.offset != 0
            self.entries.append(
                (
                    point_id(device_id, p.name),
                    p,
                    unpack,
                    swapped,
                    2 * (p.address - req.start),
                    p.scale if scaled else None,
                    p.offset,
                )
            )
        self.needs_bytes = any(e[2] is not None for e in self.entries)
        self.needs_swapped = any(e[2] is not None and e[3] for e in self.entries)
        whole = None
        if self.entries and all(e[2] is not None for e in self.entries):
            whole = codec.unpacker_for_all([(str(p.type), p.order, p.address - req.start) for p in points])
        self.unpack_all: Callable[[bytes], tuple[Any, ...]] | None = None
        self.swapped_all = False
        if whole is not None:
            self.unpack_all, self.swapped_all = whole
        self.pids = tuple(e[0] for e in self.entries)
        self.names = tuple(p.name for p in points)
        scales = tuple(e[5] for e in self.entries)
        self.scales = scales if any(sc is not None for sc in scales) else None
        self.offsets = tuple(e[6] for e in self.entries)
        # a NaN or an infinity can only come from a float register or a scaled value (ints scale
        # to floats)
        self.may_be_nan = any(
            str(p.type).startswith("float") or e[5] is not None
            for p, e in zip(points, self.entries, strict=True)
        )


#: a Reading from its four fields without NamedTuple's keyword-handling constructor (what
#: Reading._make does too): one per value of every poll
_reading: Callable[[tuple[float, str, Value, int]], Reading] = functools.partial(tuple.__new__, Reading)  # type: ignore[assignment]


def _as_stored(p: ModbusPoint, value: Value, regs: list[int]) -> Value:
    """The value a device that kept the written registers reads back: what they decode to. A
    float is compared within its own rounding (21.4 as float32 is 21.399999618530273), a scaled
    integer within its step (21.43 at scale 0.1 is stored as 214, read back 21.4) — and exactly
    beyond that: 21.0 read back for 21.4 is a device that did not keep the write."""
    if p.table == "coil" or p.type == "bit":
        return bool(value)
    decoded = codec.decode(regs, str(p.type), p.order, scale=p.scale, offset=p.offset, bit=p.bit)
    return decoded  # type: ignore[return-value]
