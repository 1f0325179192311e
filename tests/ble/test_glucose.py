"""A glucose meter with stored records through the whole stack: the mock BlueZ plays the meter
(Glucose service with measurement, context and Record Access Control Point; the RACP answers
report requests from the records it holds), bleak's real BlueZ client connects, subscribes and
writes the request; the driver pairs measurements with contexts, emits `glucose` events and keeps
the last record number in the data dir, so a reconnect (or a restart) neither repeats nor skips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dbus_fast import Variant

from edge.model import Event, HealthState
from tests.ble.bluez import ADAPTER, GlucoseMeter, MockBluez
from tests.support.site import running_site
from tests.support.waiting import until, until_async

METER = "C0:26:DA:00:00:18"
CHAR = "org.bluez.GattCharacteristic1"


def meter_site(**more: Any) -> dict[str, Any]:
    return {
        "devices": [
            {
                "id": "kiosk-glucose",
                "driver": "ble",
                "address": METER,
                "adapter": ADAPTER,
                "mode": "gatt",
                "services": ["glucose"],
                "connect_timeout": "5s",
                "reconnect_min": "50ms",
                "reconnect_max": "200ms",
                **more,
            }
        ]
    }


def sf(mantissa: int, exponent: int) -> bytes:
    return (((exponent & 0xF) << 12) | (mantissa & 0xFFF)).to_bytes(2, "little")


def reading(seq: int, mmol_x10: int, *, context: bool = False, minute: int = 0) -> bytes:
    """A measurement in mol/L (mmol/L x 10 as mantissa, exponent -4), capillary blood from a finger."""
    flags = 0x02 | 0x04 | (0x10 if context else 0)
    base = (2026).to_bytes(2, "little") + bytes([12, 6, 7, minute, 0])
    return bytes([flags]) + seq.to_bytes(2, "little") + base + sf(mmol_x10, -4) + bytes([0x11])


def meal(seq: int, code: int) -> bytes:
    """A context with the meal field only (1 preprandial, 3 fasting, ...)."""
    return bytes([0x02]) + seq.to_bytes(2, "little") + bytes([code])


def glucose_events(records: list[Any]) -> list[Event]:
    return [r for r in records if isinstance(r, Event) and r.kind == "glucose"]


async def meter_with_records(
    bluez: MockBluez, records: list[tuple[int, bytes, bytes]]
) -> tuple[str, GlucoseMeter]:
    # asleep (refusing connections) until its records are in: it is seen as soon as it is added
    device = await bluez.add_device(METER, "Glucose meter", refuse="asleep")
    meter = await bluez.add_glucose_meter(device)
    for seq, m, c in records:
        await meter.store(seq, m, c)
    return device, meter


async def wakes_up(bluez: MockBluez, device: str, meter: GlucoseMeter, writes_before: int) -> None:
    """The meter advertises; the driver connects and writes its record request."""
    await bluez.refuse_connections(device, "")
    await bluez.advertise(device, {})

    async def asked() -> bool:
        return len(await bluez.writes(meter.racp)) > writes_before

    await until_async(asked, what="the RACP record request")


async def sleeps(bluez: MockBluez, device: str, meter: GlucoseMeter, driver: Any) -> None:
    """The meter drops the link, as it does after its transfer, and takes no connection until it
    wakes up again."""
    await until(lambda: not driver.transferring, what="the end of the record transfer")
    await bluez.refuse_connections(device, "asleep")
    await bluez.disconnect(device)
    for char in (meter.measurement, meter.context, meter.racp):
        await bluez.set_properties(char, CHAR, {"Notifying": Variant("b", False)})
    await until(lambda: not driver.connected, what="driver saw the disconnect")


FIVE = [
    (1, reading(1, 52, context=True), meal(1, 3)),  # 5.2 mmol/L fasting
    (2, reading(2, 78), b""),
    (3, reading(3, 31, context=True), meal(3, 1)),  # 3.1 before a meal
    (4, reading(4, 118), b""),
    (5, reading(5, 64, context=True), meal(5, 2)),
]


async def test_stored_records_arrive_once_paired_with_their_contexts_across_reconnect_and_restart(
    tmp_path: Path, bluez: MockBluez
) -> None:
    async with running_site(tmp_path, meter_site(resident="r-0042"), web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        driver = rt.slots["kiosk-glucose"].driver
        device, meter = await meter_with_records(bluez, FIVE)
        await wakes_up(bluez, device, meter, 0)
        await until(lambda: len(glucose_events(seen)) == 5, what="the five stored records")
        assert await bluez.writes(meter.racp) == [bytes([0x01, 0x01])]  # first time: all records
        events = glucose_events(seen)
        assert [e.payload["sequence"] for e in events] == [1, 2, 3, 4, 5]
        assert [e.payload.get("meal") for e in events] == [
            "fasting",
            None,
            "preprandial",
            None,
            "postprandial",
        ]
        assert events[0].payload == {
            "sequence": 1,
            "measured_at": "2026-12-06T07:00:00",
            "glucose_mmol_l": 5.2,
            "glucose_mg_dl": 94,
            "unit_sent": "mol/L",
            "sample_type": "capillary whole blood",
            "sample_location": "finger",
            "meal": "fasting",
            "resident": "r-0042",
            "privacy": "sensitive",
        }
        assert rt.slots["kiosk-glucose"].health.state == HealthState.ONLINE
        await sleeps(bluez, device, meter, driver)

        # two more measurements later that day: the next connect asks from record 6 on
        await meter.store(6, reading(6, 91, context=True, minute=30), meal(6, 4))
        await meter.store(7, reading(7, 55, minute=45), b"")
        await wakes_up(bluez, device, meter, 1)
        await until(lambda: len(glucose_events(seen)) == 7, what="the two new records")
        assert (await bluez.writes(meter.racp))[1] == bytes([0x01, 0x03, 0x01, 0x06, 0x00])
        assert [e.payload["sequence"] for e in glucose_events(seen)][5:] == [6, 7]
        assert glucose_events(seen)[5].payload["meal"] == "casual"
        await sleeps(bluez, device, meter, driver)
        assert driver.counters["records"] == 7 and driver.counters["duplicates"] == 0

    kept = json.loads((tmp_path / "ble-glucose" / "c026da000018.json").read_text())
    assert kept == {"address": METER, "last_sequence": 7}
    # the gateway restarts: the number comes back from the data dir, nothing is sent again
    async with running_site(tmp_path, meter_site(), web=False) as rt:
        seen = []
        rt.hub.subscribe(seen.extend)
        driver = rt.slots["kiosk-glucose"].driver
        await wakes_up(bluez, device, meter, 2)
        assert (await bluez.writes(meter.racp))[2] == bytes([0x01, 0x03, 0x01, 0x08, 0x00])
        await until(lambda: driver.connected, what="connected")
        assert glucose_events(seen) == []
        assert rt.slots["kiosk-glucose"].health.state == HealthState.ONLINE  # "no records found" is fine


async def test_a_meter_that_ignores_the_filter_repeats_nothing(tmp_path: Path, bluez: MockBluez) -> None:
    async with running_site(tmp_path, meter_site(), web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        driver = rt.slots["kiosk-glucose"].driver
        device, meter = await meter_with_records(bluez, FIVE[:2])
        await wakes_up(bluez, device, meter, 0)
        await until(lambda: len(glucose_events(seen)) == 2, what="two records")
        await sleeps(bluez, device, meter, driver)
        # a meter that sends everything again: the driver drops what it already has
        await meter.answer(-2)
        await meter.store(3, reading(3, 66), b"")
        await wakes_up(bluez, device, meter, 1)
        await until(lambda: len(glucose_events(seen)) == 3, what="the new record")
        assert driver.counters["duplicates"] == 2 and driver.counters["records"] == 3
        assert [e.payload["sequence"] for e in glucose_events(seen)] == [1, 2, 3]


async def test_malformed_records_are_counted_and_dropped_the_others_arrive(
    tmp_path: Path, bluez: MockBluez
) -> None:
    nan = reading(2, 0)[:10] + bytes.fromhex("ff07") + bytes([0x11])  # the meter sent NaN
    short = reading(3, 60)[:11]  # cut short: flags announce a concentration that is not there
    async with running_site(tmp_path, meter_site(), web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        slot = rt.slots["kiosk-glucose"]
        driver = slot.driver
        device, meter = await meter_with_records(
            bluez,
            [
                (1, reading(1, 50), b""),
                (2, bytes([0x06]) + nan[1:], b""),
                (3, short, b""),
                (4, reading(4, 61), b""),
            ],
        )
        await wakes_up(bluez, device, meter, 0)
        await until(lambda: len(glucose_events(seen)) == 2, what="the two good records")
        await until(lambda: driver.counters["bad_measurements"] == 2, what="the two bad ones counted")
        assert [e.payload["sequence"] for e in glucose_events(seen)] == [1, 4]
        assert slot.restarts == 0
        assert driver.last_sequence == 4  # the NaN record was received: it is not asked for again


async def test_racp_errors_and_a_silent_meter_degrade_the_device_with_the_reason(
    tmp_path: Path, bluez: MockBluez
) -> None:
    async with running_site(tmp_path, meter_site(records_timeout="1s"), web=False) as rt:
        slot = rt.slots["kiosk-glucose"]
        driver = slot.driver
        device, meter = await meter_with_records(bluez, FIVE)
        await meter.answer(8)  # procedure not completed
        await wakes_up(bluez, device, meter, 0)
        await until(lambda: driver.counters["racp_failures"] == 1, what="the failed request")
        assert slot.health.state == HealthState.DEGRADED
        assert "procedure not completed" in slot.health.reason
        await sleeps(bluez, device, meter, driver)

        await meter.answer(-1)  # the meter never answers: the driver gives up and aborts
        await wakes_up(bluez, device, meter, 1)
        await until(lambda: driver.counters["racp_failures"] == 2, timeout=15, what="the timeout")
        assert "no RACP response within 1s" in slot.health.reason
        assert (await bluez.writes(meter.racp))[-1] == bytes([0x03, 0x00])
        assert driver.counters["records"] == 0 and driver.last_sequence is None
