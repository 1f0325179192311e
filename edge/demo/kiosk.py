"""The demo's health kiosk (`driver: demo_kiosk`): a blood-pressure cuff, a scale, a thermometer,
a glucose meter and a pulse oximeter, without a radio.

Every `every`, a simulated resident visits and measures with each instrument in turn. Each value
is encoded as the bytes the real instrument sends (the GATT formats of `drivers.ble`) and decoded
by the BLE driver's own decoders, so the events have exactly the kinds and payloads a real kiosk
produces (`blood_pressure`, `weight`, `body_temperature`, `glucose`, `spo2`), each with the
resident's id and `privacy: sensitive`: the UI, the health rule pack, privacy and the KPIs see
what they would see from the instruments. Now and then the oximeter sends NaN while the finger
settles, as real ones do.

Beacons heard at the kiosk come with the advertisement formats; their simulation belongs in
`beacon_advertisements` below, fed through the same decoders as real advertisements.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any, Literal

from drivers.ble import glucose, measurements, plx
from drivers.ble.ieee11073 import encode_float, encode_sfloat
from edge.driver import BaseDriver, DeviceConfig, DriverContext
from edge.model import (
    CommandResult,
    CommandStatus,
    Event,
    HealthState,
    PointInfo,
    PointType,
    Quality,
    Reading,
    Severity,
    Value,
    point_id,
)
from edge.units import Duration

NAN = b"\xff\x07"
RESIDENTS = 400


class DemoKioskDevice(DeviceConfig):
    """The simulated kiosk's entry: how often a resident visits, and the seed of its randomness."""

    driver: Literal["demo_kiosk"] = "demo_kiosk"
    seed: int = 0
    every: Duration = 20.0  # one visit (five measurements) this often


def _sf(value: float, digits: int = 1) -> bytes:
    return encode_sfloat(value, digits).to_bytes(2, "little")


def _date(r: random.Random) -> bytes:
    return (2026).to_bytes(2, "little") + bytes(
        [12, r.randrange(1, 29), r.randrange(7, 19), r.randrange(60), 0]
    )


def cuff(r: random.Random) -> bytes:
    """Blood Pressure Measurement in mmHg with pulse rate (0x2A35)."""
    systolic = round(r.gauss(128, 16))
    diastolic = round(min(systolic - 20, r.gauss(82, 10)))
    return bytes([0x04]) + _sf(systolic, 0) + _sf(diastolic, 0) + NAN + _sf(round(r.gauss(74, 9)), 0)


def scale(r: random.Random) -> bytes:
    """Weight Measurement in kg (0x2A9D): resolution 0.005 kg."""
    return bytes([0x00]) + round(r.gauss(68, 12) / 0.005).to_bytes(2, "little")


def thermometer(r: random.Random) -> bytes:
    """Temperature Measurement in degC, ear (0x2A1C)."""
    value = round(r.gauss(36.6, 0.35), 1)
    return bytes([0x04]) + encode_float(value, 1).to_bytes(4, "little") + bytes([3])


def meter(r: random.Random, sequence: int) -> tuple[bytes, bytes]:
    """A Glucose Measurement in mol/L from a fingertip, and its context (the meal) (0x2A18, 0x2A34)."""
    meal = r.choice([1, 2, 3, 4])  # before a meal, after, fasting, casual
    mmol = round(max(2.5, r.gauss(6.8 if meal == 2 else 5.6, 1.6)), 1)
    seq = sequence.to_bytes(2, "little")
    value = encode_sfloat(mmol / 1000, 5).to_bytes(2, "little")
    measurement = bytes([0x02 | 0x04 | 0x10]) + seq + _date(r) + value + bytes([0x11])
    return measurement, bytes([0x02]) + seq + bytes([meal])


def oximeter(r: random.Random) -> bytes:
    """A PLX Spot-Check Measurement (0x2A5E); one in eight has SpO2 NaN (finger still settling)."""
    spo2 = NAN if r.random() < 0.125 else _sf(min(100, round(r.gauss(96.5, 1.8))), 0)
    return bytes([0x00]) + spo2 + _sf(round(r.gauss(76, 10)), 0)


def beacon_advertisements(r: random.Random) -> list[tuple[str, bytes]]:
    """The kiosk's beacons as (address, advertisement bytes): none yet (see the module docstring)."""
    return []


class DemoKioskDriver(BaseDriver):
    config_model = DemoKioskDevice

    def __init__(self, device: DemoKioskDevice, ctx: DriverContext) -> None:
        super().__init__(device, ctx)
        self.device: DemoKioskDevice = device
        self.rng = random.Random(device.seed)
        self.sequence = 0
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    def points(self) -> list[PointInfo]:
        return [
            PointInfo(
                id=point_id(self.id, "measurements"),
                device=self.id,
                name="measurements",
                type=PointType.INT,
                description="measurements of the simulated instruments since the demo started",
            )
        ]

    async def start(self) -> None:
        self.set_health(HealthState.ONLINE)
        self._task = asyncio.create_task(self._visits(), name=f"demo-kiosk:{self.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.set_health(HealthState.STOPPED, "stopped")
        self.end_stream()

    async def _visits(self) -> None:
        while True:
            self.visit()
            await asyncio.sleep(self.device.every)

    def visit(self) -> None:
        """One resident measures with every instrument: five events (fewer when the oximeter had
        nothing to report)."""
        r = self.rng
        resident = f"r-{r.randrange(1, RESIDENTS):04d}"
        self.sequence += 1
        m, c = meter(r, self.sequence)
        readings: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("blood_pressure", lambda: measurements.blood_pressure(cuff(r))),
            ("weight", lambda: measurements.weight(scale(r))),
            ("body_temperature", lambda: measurements.body_temperature(thermometer(r))),
            ("glucose", lambda: glucose.glucose_record(glucose.measurement(m), glucose.context(c)[1])),
            ("spo2", lambda: plx.spot_check(oximeter(r))),
        ]
        for kind, decode in readings:
            try:
                payload = decode()
            except measurements.BadMeasurement:
                continue
            payload["resident"] = resident
            payload["privacy"] = "sensitive"
            self.count += 1
            ts = self.ctx.clock()
            self.emit(
                [
                    Event(kind, self.id, Severity.INFO, payload, ts),
                    Reading(ts, point_id(self.id, "measurements"), self.count, Quality.GOOD),
                ]
            )

    async def write(self, point: str, value: Value) -> CommandResult:
        return CommandResult(
            point_id(self.id, point), value, CommandStatus.REJECTED, "the kiosk is read-only"
        )
