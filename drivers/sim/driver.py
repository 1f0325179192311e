"""The simulated driver (`driver: sim`): signal shapes, writable echo points, events, fault injection.

It drives the demo site and the tests. Every point has its own sampling interval; points that share
an interval are sampled together and emitted as one batch. Signals are functions of time so a
restart continues where the shape would be (a ramp does not start over), except the stateful
ones (random walk, counter), which keep state in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from typing import Any, Literal

from pydantic import Field, model_validator

from edge.driver import BaseDriver, DeviceConfig, DeviceReadError, DriverContext, PointConfig
from edge.model import (
    CommandResult,
    CommandStatus,
    Event,
    HealthState,
    PointInfo,
    PointType,
    Quality,
    Reading,
    Record,
    Severity,
    Value,
    point_id,
)
from edge.units import Duration
from edge.validation import EventKind, Strict

Signal = Literal["constant", "ramp", "sine", "random_walk", "random", "counter", "toggle", "step"]


class SimPoint(PointConfig):
    signal: Signal = "constant"
    interval: Duration = 1.0
    value: float | int | bool | str | None = None  # constant: the value; others: the start
    min: float = 0.0
    max: float = 100.0
    period: Duration = 60.0
    step: float = 1.0  # random_walk: max step; counter: increment per sample
    start: float | None = None
    values: list[float | int | bool | str] = Field(default_factory=list)  # step: cycled values
    duty: float = Field(0.5, gt=0, lt=1)  # toggle: fraction of the period spent True

    @model_validator(mode="after")
    def _check(self) -> SimPoint:
        if self.interval <= 0:
            raise ValueError("interval must be greater than 0")
        if self.signal in ("ramp", "sine", "random_walk", "random") and self.max <= self.min:
            raise ValueError(f"max ({self.max}) must be greater than min ({self.min})")
        if self.signal in ("ramp", "sine", "toggle", "step") and self.period <= 0:
            raise ValueError("period must be greater than 0")
        if self.signal == "step" and not self.values:
            raise ValueError("a step signal needs values: [v1, v2, ...]")
        if self.signal == "toggle" and self.type != PointType.BOOL:
            raise ValueError("a toggle signal needs type: bool")
        return self


class SimEvent(Strict):
    kind: EventKind
    every: Duration = 60.0
    generator: Literal["blood_pressure", "vehicle", "weight", "generic"] = "generic"
    severity: Severity = Severity.INFO
    # a generated payload names a class only when the site sets one: else its kind's applies
    # (`edge.model.event_privacy`: sensitive for a health measurement)
    privacy: Literal["public", "personal", "sensitive"] | None = None
    payload: dict[str, Any] = Field(default_factory=dict)  # generic: the payload as given


class SimFault(Strict):
    type: Literal["dropout", "garbage", "slow", "crash"]
    every: Duration = 600.0  # dropout/slow: how often the fault starts; crash: how long a driver lives
    duration: Duration = 20.0  # dropout/slow: how long it lasts
    delay: Duration = 2.0  # slow: extra delay per sample
    probability: float = Field(0.0, ge=0, le=1)  # garbage: per sample
    first_after: Duration | None = None  # when the first occurrence starts (default: `every`)


class SimDevice(DeviceConfig):
    driver: Literal["sim"] = "sim"
    points: list[SimPoint] = Field(default_factory=list)
    events: list[SimEvent] = Field(default_factory=list)
    faults: list[SimFault] = Field(default_factory=list)
    seed: int | None = None  # reproducible random signals

    def point_infos(self) -> list[PointInfo]:
        return super().point_infos()


class SimDriver(BaseDriver):
    config_model = SimDevice

    def __init__(self, device: SimDevice, ctx: DriverContext) -> None:
        super().__init__(device, ctx)
        self.cfg = device
        self.rng = random.Random(device.seed)
        self._tasks: list[asyncio.Task[None]] = []
        self._state: dict[str, Any] = {}
        self._written: dict[str, Value] = {}
        self._t0 = ctx.clock()
        self.writes: list[tuple[str, Value]] = []  # what was written, in order (tests look at it)

    def points(self) -> list[PointInfo]:
        return self.cfg.point_infos()

    async def start(self) -> None:
        groups: dict[float, list[SimPoint]] = {}
        for p in self.cfg.points:
            groups.setdefault(p.interval, []).append(p)
        for interval, pts in groups.items():
            self._tasks.append(
                asyncio.create_task(self._sample_loop(interval, pts), name=f"sim:{self.id}:{interval}")
            )
        for ev in self.cfg.events:
            self._tasks.append(asyncio.create_task(self._event_loop(ev), name=f"sim:{self.id}:{ev.kind}"))
        self.set_health(HealthState.ONLINE)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self.end_stream()

    # ------------------------------------------------------------ faults
    def _fault_active(self, kind: str, now: float) -> SimFault | None:
        for f in self.cfg.faults:
            if f.type != kind or kind == "garbage":
                continue
            first = f.every if f.first_after is None else f.first_after
            elapsed = now - self._t0 - first
            if elapsed >= 0 and (kind == "crash" or (elapsed % f.every) < f.duration):
                return f
        return None

    def _garbage(self) -> bool:
        return any(f.type == "garbage" and self.rng.random() < f.probability for f in self.cfg.faults)

    # ------------------------------------------------------------ sampling
    async def _sample_loop(self, interval: float, pts: list[SimPoint]) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            now = self.ctx.clock()
            crash = self._fault_active("crash", now)
            if crash is not None:
                self.fail(RuntimeError("simulated crash"))
                return
            if self._fault_active("dropout", now):
                if self.health.state != HealthState.OFFLINE:
                    self.set_health(HealthState.OFFLINE, "simulated dropout: no answer")
                    self.health.errors += 1
                    self.emit(
                        [
                            Reading(now, point_id(self.id, p.name), None, Quality.STALE)
                            for p in self.cfg.points
                        ]
                    )
            else:
                slow = self._fault_active("slow", now)
                if slow is not None:
                    self.set_health(HealthState.DEGRADED, f"simulated slow answers (+{slow.delay:g}s)")
                    await asyncio.sleep(slow.delay)
                    now = self.ctx.clock()
                elif self.health.state != HealthState.ONLINE:
                    self.set_health(HealthState.ONLINE)
                batch: list[Record] = []
                for p in pts:
                    pid = point_id(self.id, p.name)
                    if self._garbage():
                        self.health.errors += 1
                        batch.append(Reading(now, pid, None, Quality.BAD))
                    else:
                        batch.append(Reading(now, pid, self._value(p, now), Quality.GOOD))
                self.health.last_ok = now
                self.emit(batch)
            next_at += interval
            delay = next_at - loop.time()
            if delay < 0:  # fell behind (slow fault, busy loop): skip, never burst
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    def _value(self, p: SimPoint, now: float, *, peek: bool = False) -> Value:
        """The signal's value at `now`. `peek`: look without moving a stateful signal on (an
        on-demand read must not advance a counter or the seeded random sequence)."""
        if p.name in self._written:
            return self._written[p.name]
        t = now - self._t0
        s = p.signal
        if peek and s in ("random_walk", "counter") and p.name in self._state:
            return _as_type(self._state[p.name], p.type)
        if peek and s in ("random", "random_walk", "counter"):
            # never sampled yet (or pure noise): a fresh draw that leaves self.rng untouched
            saved_rng, saved_state = self.rng, dict(self._state)
            self.rng = random.Random()
            try:
                return self._value(p, now)
            finally:
                self.rng, self._state = saved_rng, saved_state
        if s == "constant":
            v: Value = p.value if p.value is not None else p.min if p.type != PointType.BOOL else False
        elif s == "ramp":
            v = p.min + (p.max - p.min) * ((now % p.period) / p.period)
        elif s == "sine":
            mid, amp = (p.max + p.min) / 2, (p.max - p.min) / 2
            v = mid + amp * math.sin(2 * math.pi * now / p.period)
        elif s == "random":
            v = self.rng.uniform(p.min, p.max)
        elif s == "random_walk":
            cur = self._state.get(p.name)
            if cur is None:
                cur = p.start if p.start is not None else (p.min + p.max) / 2
            cur = min(p.max, max(p.min, cur + self.rng.uniform(-p.step, p.step)))
            self._state[p.name] = cur
            v = cur
        elif s == "counter":
            cur = self._state.get(p.name)
            cur = (p.start or 0.0) if cur is None else cur + p.step
            self._state[p.name] = cur
            v = cur
        elif s == "toggle":
            v = (now % p.period) < p.period * p.duty
        else:  # step
            v = p.values[int(t // p.period) % len(p.values)]
        return _as_type(v, p.type)

    # ------------------------------------------------------------ events
    async def _event_loop(self, ev: SimEvent) -> None:
        while True:
            await asyncio.sleep(ev.every * self.rng.uniform(0.7, 1.3))
            now = self.ctx.clock()
            if self._fault_active("dropout", now):
                continue
            self.emit([Event(ev.kind, self.id, ev.severity, self._payload(ev), now)])

    def _payload(self, ev: SimEvent) -> dict[str, Any]:
        r = self.rng
        if ev.generator == "blood_pressure":
            systolic = round(r.gauss(128, 16))
            diastolic = round(min(systolic - 20, r.gauss(82, 10)))
            payload: dict[str, Any] = {
                "systolic_mmhg": systolic,
                "diastolic_mmhg": diastolic,
                "pulse_bpm": round(r.gauss(74, 9)),
                "resident": f"r-{r.randrange(1, 400):04d}",
            }
        elif ev.generator == "vehicle":
            payload = {"plate": f"沪A{r.randrange(10000, 99999)}", "direction": r.choice(["in", "out"])}
        elif ev.generator == "weight":
            payload = {"weight_kg": round(r.gauss(68, 12), 1), "resident": f"r-{r.randrange(1, 400):04d}"}
        else:
            return dict(ev.payload)
        if ev.privacy is not None:
            payload["privacy"] = ev.privacy
        return payload

    # ------------------------------------------------------------ on-demand read
    async def read(self, point: str) -> Reading:
        """The point's simulated value now; fails like the device would during a dropout."""
        spec = next((p for p in self.cfg.points if p.name == point), None)
        if spec is None:
            raise LookupError(f"device {self.id} has no point {point!r}")
        now = self.ctx.clock()
        if self._fault_active("dropout", now) is not None:
            raise DeviceReadError(f"device {self.id} does not answer (simulated dropout)", no_answer=True)
        slow = self._fault_active("slow", now)
        if slow is not None:
            await asyncio.sleep(slow.delay)
            now = self.ctx.clock()
        pid = point_id(self.id, point)
        if self._garbage():
            return Reading(now, pid, None, Quality.BAD)
        return Reading(now, pid, self._value(spec, now, peek=True), Quality.GOOD)

    # ------------------------------------------------------------ writes
    async def write(self, point: str, value: Value) -> CommandResult:
        pid = point_id(self.id, point)
        spec = next((p for p in self.cfg.points if p.name == point), None)
        if spec is None or not spec.writable:
            return CommandResult(pid, value, CommandStatus.REJECTED, "not a writable point of this device")
        now = self.ctx.clock()
        if self._fault_active("dropout", now):
            return CommandResult(
                pid, value, CommandStatus.FAILED, "device does not answer (simulated dropout)"
            )
        slow = self._fault_active("slow", now)
        if slow is not None:
            await asyncio.sleep(slow.delay)
        value = _as_type(value, spec.type)
        self._written[point] = value
        self.writes.append((point, value))
        self.emit([Reading(self.ctx.clock(), pid, value, Quality.GOOD)])  # echo at once
        return CommandResult(pid, value, CommandStatus.OK)


def _as_type(v: Value, t: PointType) -> Value:
    if v is None:
        return None
    if t == PointType.BOOL:
        return bool(v)
    if t == PointType.INT:
        return round(float(v))  # type: ignore[arg-type]
    if t == PointType.STR:
        return str(v)
    return round(float(v), 4)  # type: ignore[arg-type]


DRIVER = SimDriver
