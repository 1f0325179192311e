"""A BLE sensor back in range after `stale_after` of silence, through the whole stack (mock BlueZ,
bleak's BlueZ backend, the shared scanner, the driver, the hub and its journal): the packet it
advertised last, heard again, brings it back online; the points that packet restates are good
again with their values, once in the journal; what it does not restate (the RSSI of the last
packet read) stays stale until a new packet. An encrypted sensor's last packet is the exception:
anyone who recorded it can send it again, so only a newer counter brings that sensor back."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from drivers.ble.bthome import SERVICE_UUID, encrypt
from drivers.ble.mfr import full_uuid
from edge.model import Event, HealthState, Quality, Reading
from tests.ble.bluez import ADAPTER, MockBluez
from tests.support.site import running_site
from tests.support.waiting import until

DOOR = "A4:C1:38:00:00:01"
THERMO = "A4:C1:38:8C:41:93"
ENV_SENSING = full_uuid("181a")
PVVX = bytes.fromhex("93 41 8c 38 c1 a4 ac 08 9e 14 a0 0b 64 88 04")  # 22.20 degC, 52.78 %, counter 136
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")


def door_packet(packet_id: int, opened: bool) -> bytes:
    """BTHome v2: packet id, battery 90 %, door (object 0x1a)."""
    return bytes([0x40, 0x00, packet_id, 0x01, 90, 0x1A, int(opened)])


def door_site(**extra: Any) -> dict[str, Any]:
    device = {
        "id": "door-2",
        "driver": "ble",
        "address": DOOR,
        "adapter": ADAPTER,
        "stale_after": "1s",
        "points": [
            {"name": "door", "object": "door"},
            {"name": "battery", "object": "battery"},
            {"name": "signal", "object": "rssi"},
        ],
        **extra,
    }
    return {"devices": [device]}


def readings(seen: list[Any], point: str) -> list[Reading]:
    return [r for r in seen if isinstance(r, Reading) and r.point == point]


def states(seen: list[Any]) -> list[str]:
    return [e.payload["state"] for e in seen if isinstance(e, Event) and e.kind == "device_state"]


def reaches(counters: dict[str, int], name: str, n: int) -> Callable[[], bool]:
    return lambda: counters[name] == n


def never_good_twice(journaled: list[Reading]) -> bool:
    """No good reading journaled right after a good one of the same value: nothing repeated."""
    return not any(
        a.quality == b.quality == Quality.GOOD and a.value == b.value for a, b in pairwise(journaled)
    )


async def test_the_same_packet_heard_again_brings_the_sensor_back(tmp_path: Path, bluez: MockBluez) -> None:
    async with running_site(tmp_path, door_site(), web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        path = await bluez.add_device(DOOR, "door")
        slot = rt.slots["door-2"]
        driver = slot.driver
        latest = rt.hub.latest
        await bluez.advertise(path, {SERVICE_UUID: door_packet(7, False)}, rssi=-60)
        await until(lambda: "door-2.door" in latest, what="a reading")
        await until(lambda: latest["door-2.door"].quality == Quality.STALE, timeout=5, what="stale")
        assert slot.health.state == HealthState.OFFLINE
        # back in range: the sensor advertises its last packet again (the door is still closed)
        await bluez.advertise(path, {SERVICE_UUID: door_packet(7, False)}, rssi=-63)
        await until(lambda: latest["door-2.door"].quality == Quality.GOOD, what="the door good again")
        assert slot.health.state == HealthState.ONLINE
        assert latest["door-2.door"].value is False
        assert latest["door-2.battery"].value == 90 and latest["door-2.battery"].quality == Quality.GOOD
        # the RSSI is the last packet read's, not restated by the repeat: still stale, still -60
        assert latest["door-2.signal"].value == -60 and latest["door-2.signal"].quality == Quality.STALE
        assert driver.counters["packets"] == 1 and driver.counters["duplicates"] == 1
        assert states(seen)[:2] == ["offline", "online"]
        for n in range(2, 6):  # BlueZ keeps reporting it: dropped, nothing journaled again
            await bluez.advertise(path, {SERVICE_UUID: door_packet(7, False)}, rssi=-60 - n)
            await until(reaches(driver.counters, "duplicates", n), what=f"repeat {n} dropped")
        assert driver.counters["packets"] == 1
        assert never_good_twice(readings(seen, "door-2.door"))
        assert never_good_twice(readings(seen, "door-2.battery"))
        signal = [r.quality for r in readings(seen, "door-2.signal")]
        assert signal[0] == Quality.GOOD and set(signal[1:]) == {Quality.STALE}
        # the door opens: a new packet, every point good with its new value
        await bluez.advertise(path, {SERVICE_UUID: door_packet(8, True)}, rssi=-61)
        await until(lambda: latest["door-2.door"].value is True, what="the new packet")
        assert latest["door-2.signal"].value == -61 and latest["door-2.signal"].quality == Quality.GOOD
        assert slot.health.state == HealthState.ONLINE


async def test_a_layout_sensor_heard_again_is_present_with_its_values_good(
    tmp_path: Path, bluez: MockBluez
) -> None:
    device = {"id": "hall-climate", "profile": "ble-pvvx-thermometer", "address": THERMO}
    device |= {"adapter": ADAPTER, "stale_after": "1s"}
    async with running_site(tmp_path, {"devices": [device]}, web=False) as rt:
        path = await bluez.add_device(THERMO, "ATC_8C4193")
        slot = rt.slots["hall-climate"]
        driver = slot.driver
        latest = rt.hub.latest
        await bluez.advertise(path, {ENV_SENSING: PVVX}, rssi=-66)
        await until(lambda: "hall-climate.temperature" in latest, what="a reading")
        await until(lambda: latest["hall-climate.present"].value is False, timeout=5, what="absent")
        await bluez.advertise(path, {ENV_SENSING: PVVX}, rssi=-70)  # the same counter: the same packet
        await until(lambda: latest["hall-climate.present"].value is True, what="present again")
        assert latest["hall-climate.present"].quality == Quality.GOOD
        assert slot.health.state == HealthState.ONLINE
        for point, value in (("temperature", 22.2), ("humidity", 52.78)):
            reading = latest[f"hall-climate.{point}"]
            assert reading.value == value and reading.quality == Quality.GOOD, reading
        assert latest["hall-climate.rssi"].value == -66
        assert latest["hall-climate.rssi"].quality == Quality.STALE
        assert driver.counters["duplicates"] == 1 and driver.counters["packets"] == 1


async def test_a_silent_encrypted_sensor_is_back_on_a_new_counter_never_on_its_last_packet(
    tmp_path: Path, bluez: MockBluez, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone who recorded an encrypted sensor's last packet can send it again: heard while the
    sensor is silent, it is a counted duplicate that brings nothing back; the sensor's next packet
    (a newer counter) does."""
    monkeypatch.setenv("EDGE_TEST_DOOR_KEY", KEY.hex())

    def sealed(counter: int, opened: bool) -> bytes:
        return encrypt(bytes([0x1A, int(opened)]), KEY, DOOR, counter)  # no packet id: the counter

    async with running_site(tmp_path, door_site(bind_key_env="EDGE_TEST_DOOR_KEY"), web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        path = await bluez.add_device(DOOR, "door")
        slot = rt.slots["door-2"]
        driver = slot.driver
        latest = rt.hub.latest
        await bluez.advertise(path, {SERVICE_UUID: sealed(10, True)}, rssi=-60)
        await until(lambda: "door-2.door" in latest, what="the first packet")
        await bluez.advertise(path, {SERVICE_UUID: sealed(11, False)}, rssi=-61)
        await until(lambda: latest["door-2.door"].value is False, what="the second packet")
        await until(lambda: slot.health.state == HealthState.OFFLINE, timeout=5, what="offline")
        await bluez.advertise(path, {SERVICE_UUID: sealed(10, True)}, rssi=-62)  # an older packet
        await until(lambda: driver.counters["replayed"] == 1, what="the replay refused")
        assert slot.health.state != HealthState.ONLINE
        assert latest["door-2.door"].value is False and latest["door-2.door"].quality == Quality.STALE
        for n in range(1, 4):  # its last packet, re-sent (recorded, or the sensor repeating it)
            await bluez.advertise(path, {SERVICE_UUID: sealed(11, False)}, rssi=-62 - n)
            await until(reaches(driver.counters, "duplicates", n), what=f"re-sent packet {n} dropped")
            assert slot.health.state == HealthState.OFFLINE
            assert latest["door-2.door"].quality == Quality.STALE
        assert "only its last one (counter 11) heard again" in slot.health.reason
        assert "3 duplicates" in slot.health.reason
        assert driver.counters["packets"] == 2
        assert "online" not in states(seen)
        door = [r.quality for r in readings(seen, "door-2.door")]
        assert door[:2] == [Quality.GOOD, Quality.GOOD] and set(door[2:]) == {Quality.STALE}
        # the sensor's next packet: a newer counter, believed
        await bluez.advertise(path, {SERVICE_UUID: sealed(12, False)}, rssi=-63)
        await until(lambda: slot.health.state == HealthState.ONLINE, what="online again")
        assert latest["door-2.door"].value is False and latest["door-2.door"].quality == Quality.GOOD
        assert driver.counters["packets"] == 3 and driver.counters["duplicates"] == 3
