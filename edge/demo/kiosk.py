"""The demo's health kiosk (`driver: demo_kiosk`): a blood-pressure cuff, a scale, a thermometer,
a glucose meter and a pulse oximeter, without a radio.

Every `every`, a simulated resident visits and measures with each instrument in turn. Each value
is encoded as the bytes the real instrument sends (the GATT formats of `drivers.ble`) and decoded
by the BLE driver's own decoders, so the events have exactly the kinds and payloads a real kiosk
produces (`blood_pressure`, `weight`, `body_temperature`, `glucose`, `spo2`), each with the
resident's id and `privacy: sensitive`: the UI, the health rule pack, privacy and the KPIs see
what they would see from the instruments. Now and then the oximeter sends NaN while the finger
settles, as real ones do.

Beacons and advertising sensors (`driver: demo_ble`): a device entry exactly as a BLE one of
mode `ibeacon`, `eddystone` or `advert` (its address or `beacon:` ids, its profile, `points:`),
whose advertisements `beacon_advertisements` makes up (an iBeacon with a wandering signal, an
Eddystone UID and TLM, a vendor layout's fields encoded by `drivers.ble.mfr.encode`) and hands to
the BLE driver's own `on_advertisement`: the same decoders, de-duplication, presence and
staleness as a radio's advertisements. `away_every` sends the beacon away (silent for longer than
`stale_after`) now and then, so the UI shows `present` going false and coming back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import model_validator

from drivers.ble import adverts, glucose, measurements, mfr, plx
from drivers.ble.adverts import MODES
from drivers.ble.config import BleDevice
from drivers.ble.driver import BleDriver
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


#: the kinds of the kiosk's measurements, one per instrument, in the order a resident uses them
KINDS = ("blood_pressure", "weight", "body_temperature", "glucose", "spo2")


class DemoKioskDevice(DeviceConfig):
    """The simulated kiosk's entry: how often a resident visits, and the seed of its randomness."""

    driver: Literal["demo_kiosk"] = "demo_kiosk"
    seed: int = 0
    every: Duration = 20.0  # one visit (five measurements) this often

    def declared_events(self) -> dict[str, dict[str, Any]]:
        """The event kinds the kiosk emits without its entry listing them, each with the payload
        fields that set its class (`edge.model.event_privacy`): every measurement carries
        `privacy: sensitive`. Read by the record of processing (`edge privacy report`)."""
        return {kind: {"privacy": "sensitive"} for kind in KINDS}


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


class DemoBleDevice(BleDevice):
    """A simulated beacon or advertising sensor: a BLE device entry (mode ibeacon, eddystone or
    advert) plus how often it advertises, how often it goes away, and its randomness's seed."""

    driver: Literal["demo_ble"] = "demo_ble"  # type: ignore[assignment]
    seed: int = 0
    every: Duration = 5.0  # one advertisement this often
    away_every: Duration = 0.0  # this often, silent for stale_after + every (0: never away)

    @model_validator(mode="after")
    def _advertises(self) -> DemoBleDevice:
        if self.mode not in MODES:
            raise ValueError(f"a simulated BLE device is one of mode {', '.join(MODES)}")
        if self.every <= 0:
            raise ValueError("every must be greater than 0")
        if self.away_every < 0:
            raise ValueError("away_every must be 0 (never away) or more")
        return self


@dataclass
class Advertisement:
    """What bleak reports of one advertisement: the fields the BLE driver reads."""

    address: str
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    rssi: int = -70
    local_name: str | None = None


#: where a field of a vendor layout starts and how far it wanders per advertisement
WALKS: dict[str, tuple[float, float, float, float]] = {  # name: (start, low, high, step)
    "temperature": (23.0, 16.0, 31.0, 0.05),
    "humidity": (55.0, 30.0, 85.0, 0.2),
    "pressure": (1012.0, 985.0, 1035.0, 0.05),
    "battery_mv": (2980.0, 2900.0, 3000.0, 0.0),
    "battery": (87.0, 80.0, 90.0, 0.0),
    "tx_power": (4.0, 4.0, 4.0, 0.0),
    "acceleration_z": (1.0, 0.98, 1.02, 0.002),
}
COUNTER_FIELDS = ("counter", "sequence", "movement_count")
DEMO_UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
DEMO_NAMESPACE = "edd1ebeac04e5defa017"


@dataclass
class BeaconState:
    """The made-up state of one simulated device between two advertisements."""

    device: DemoBleDevice
    address: str
    values: dict[str, Value] = field(default_factory=dict)
    rssi: float = -65.0
    sent: int = 0


def beacon_state(device: DemoBleDevice, r: random.Random) -> BeaconState:
    """A new simulated device: its address (a random private one when it is matched by ids) and
    its fields' starting values."""
    state = BeaconState(device, device.address or _private_address(r))
    layout = mfr.load_layout(device.profile) if device.mode == "advert" and device.profile else None
    for f in layout.fields if layout else []:
        if f.type in mfr.MAC_TYPES:
            state.values[f.name] = state.address
        elif f.name in WALKS:
            state.values[f.name] = WALKS[f.name][0]
        elif f.bit is not None:
            state.values[f.name] = False
        else:
            state.values[f.name] = 0
    return state


def _private_address(r: random.Random) -> str:
    """A resolvable private address (top bits 01), as a phone or tag rotating its address uses."""
    first = 0x40 | r.randrange(0x40)
    return ":".join(f"{b:02X}" for b in [first, *(r.randrange(256) for _ in range(5))])


def beacon_advertisements(state: BeaconState, r: random.Random) -> list[Advertisement]:
    """The next advertisement(s) of a simulated beacon or sensor, encoded as the real device
    encodes them; a beacon matched by ids takes a new address every 15 minutes' worth."""
    d = state.device
    state.sent += 1
    state.rssi = min(-45.0, max(-90.0, state.rssi + r.gauss(0, 1.5)))
    rssi = round(state.rssi)
    if d.address is None and state.sent % max(1, round(900 / d.every)) == 0:
        state.address = _private_address(r)
    if d.mode == "ibeacon":
        ids = d.beacon
        beacon = adverts.IBeacon(
            ids.uuid if ids and ids.uuid else DEMO_UUID,
            ids.major if ids and ids.major is not None else 1,
            ids.minor if ids and ids.minor is not None else 1,
            -59,
        )
        return [Advertisement(state.address, adverts.encode_ibeacon(beacon), rssi=rssi)]
    if d.mode == "eddystone":
        ids = d.beacon
        uid = adverts.EddystoneUID(
            ids.namespace if ids and ids.namespace else DEMO_NAMESPACE,
            ids.instance if ids and ids.instance else "000000000001",
            -20,
        )
        seconds = state.sent * d.every
        tlm = adverts.EddystoneTLM(
            3000 - state.sent // 1000, round(21 + r.gauss(0, 0.2), 2), state.sent, seconds
        )
        return [
            Advertisement(state.address, service_data=adverts.encode_eddystone(uid), rssi=rssi),
            Advertisement(state.address, service_data=adverts.encode_eddystone(tlm), rssi=rssi),
        ]
    assert d.profile is not None
    layout = mfr.load_layout(d.profile)
    for f in layout.fields:
        v = state.values.get(f.name)
        if f.name in WALKS and isinstance(v, float):
            _start, low, high, step = WALKS[f.name]
            state.values[f.name] = min(high, max(low, v + r.gauss(0, step) if step else v))
        elif f.name in COUNTER_FIELDS or f.name == layout.packet_id:
            bits = f.width or (1 if f.bit is not None else f.size * 8)
            top = (1 << bits) - 1 - (f.invalid == (1 << bits) - 1)
            state.values[f.name] = (int(v or 0) + 1) % (top + 1)
        elif f.bit is not None and f.name == "reed_switch" and r.random() < 0.05:
            state.values[f.name] = not v  # a door opened or closed
    payload = mfr.encode(layout, state.values)
    if layout.manufacturer is not None:
        return [Advertisement(state.address, {layout.manufacturer: payload}, rssi=rssi)]
    assert layout.service is not None
    return [Advertisement(state.address, service_data={layout.service: payload}, rssi=rssi)]


class DemoBleDriver(BleDriver):
    """The BLE driver itself, fed with made-up advertisements instead of a scanner's."""

    config_model = DemoBleDevice  # type: ignore[assignment]  # a BleDevice with the demo's keys

    def __init__(self, device: DemoBleDevice, ctx: DriverContext) -> None:
        super().__init__(device, ctx)
        self.demo: DemoBleDevice = device
        self.rng = random.Random(device.seed)
        self.state = beacon_state(device, self.rng)

    async def listen(self) -> None:
        # BleDriver.stop cancels its tasks, this one with them
        self._tasks.append(asyncio.create_task(self._advertise(), name=f"demo-ble:{self.id}"))

    async def unlisten(self) -> None:
        return None

    async def _advertise(self) -> None:
        loop = asyncio.get_running_loop()
        away_at = loop.time() + self.demo.away_every
        while True:
            if self.demo.away_every and loop.time() >= away_at:
                await asyncio.sleep(self.demo.stale_after + self.demo.every)
                away_at = loop.time() + self.demo.away_every
            self.advertise()
            await asyncio.sleep(self.demo.every)

    def advertise(self) -> None:
        """Send the next simulated advertisement(s) through the BLE driver."""
        for adv in beacon_advertisements(self.state, self.rng):
            self.on_advertisement(adv, adv)


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
        decoders: list[Callable[[], dict[str, Any]]] = [
            lambda: measurements.blood_pressure(cuff(r)),
            lambda: measurements.weight(scale(r)),
            lambda: measurements.body_temperature(thermometer(r)),
            lambda: glucose.glucose_record(glucose.measurement(m), glucose.context(c)[1]),
            lambda: plx.spot_check(oximeter(r)),
        ]
        for kind, decode in zip(KINDS, decoders, strict=True):
            try:
                payload = decode()
            except measurements.BadMeasurement:
                continue
            payload["resident"] = resident
            payload.update(self.device.declared_events()[kind])
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
