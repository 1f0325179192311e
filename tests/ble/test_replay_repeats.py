"""Replay protection of encrypted BTHome sensors through the whole stack (mock BlueZ, bleak's
BlueZ backend, the shared scanner, the driver, the hub): an old authentic packet sent again and
again is refused, counted and shown, never taken for a sensor whose counter restarted; a real
restart (counters growing again from low) is believed after 3 of them; the latest packet
re-reported by BlueZ is the same packet again, not a replay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.ble.bthome import SERVICE_UUID, encrypt
from edge.model import Event, HealthState, Quality
from tests.ble.bluez import ADAPTER, MockBluez
from tests.support.site import running_site
from tests.support.waiting import until

SMOKE = "A4:C1:38:00:00:04"
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
POINT = "smoke-3f.smoke"


def sealed(counter: int, smoke: bool) -> bytes:
    """The smoke sensor's packet: packet id (the counter's low byte), smoke (object 0x29)."""
    return encrypt(bytes([0x00, counter & 0xFF, 0x29, int(smoke)]), KEY, SMOKE, counter)


def reaches(counters: dict[str, int], name: str, n: int) -> Callable[[], bool]:
    return lambda: counters[name] == n


@pytest.fixture
def smoke_site(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("EDGE_TEST_SMOKE_KEY", KEY.hex())
    device = {
        "id": "smoke-3f",
        "driver": "ble",
        "address": SMOKE,
        "adapter": ADAPTER,
        "bind_key_env": "EDGE_TEST_SMOKE_KEY",
        "points": [{"name": "smoke", "object": "smoke"}],
    }
    return {"devices": [device]}


async def test_one_recorded_packet_sent_again_is_refused_every_time(
    tmp_path: Path, bluez: MockBluez, smoke_site: dict[str, Any]
) -> None:
    async with running_site(tmp_path, smoke_site, web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        path = await bluez.add_device(SMOKE, "smoke")
        slot = rt.slots["smoke-3f"]
        driver = slot.driver
        latest = rt.hub.latest
        recorded = sealed(100, False)  # yesterday's "no smoke", recorded by someone nearby
        for n, counter in enumerate(range(500, 503)):  # today: smoke from counter 502 on
            await bluez.advertise(path, {SERVICE_UUID: sealed(counter, counter >= 502)}, rssi=-60 - n)
            await until(reaches(driver.counters, "packets", n + 1), what=f"packet {counter}")
        assert latest[POINT].value is True and slot.health.state == HealthState.ONLINE
        assert slot.health.errors == 0
        for n in range(5):  # the recorded packet, sent again and again (BlueZ reports each: new RSSI)
            await bluez.advertise(path, {SERVICE_UUID: recorded}, rssi=-50 - n)
            await until(reaches(driver.counters, "replayed", n + 1), what=f"replay {n + 1} refused")
            assert latest[POINT].value is True and latest[POINT].quality == Quality.GOOD
            assert slot.health.state == HealthState.DEGRADED
        assert "replay" in slot.health.reason and "counter 100" in slot.health.reason
        assert "5 replayed" in slot.health.reason
        assert slot.health.errors == 5
        assert driver.counters["packets"] == 3 and driver.counters["counter_restarts"] == 0
        smoke_values = [r.value for r in seen if getattr(r, "point", None) == POINT]
        assert smoke_values == [False, False, True]  # nothing of the replays reached the journal
        states = [e.payload["state"] for e in seen if isinstance(e, Event) and e.kind == "device_state"]
        assert states == ["degraded"]  # one event for the run of replays
        # the sensor's own next packet: believed, the device online again
        await bluez.advertise(path, {SERVICE_UUID: sealed(503, True)}, rssi=-61)
        await until(lambda: slot.health.state == HealthState.ONLINE, what="online again")
        assert driver.counters["packets"] == 4


async def test_a_restarted_counter_needs_three_distinct_growing_counters(
    tmp_path: Path, bluez: MockBluez, smoke_site: dict[str, Any]
) -> None:
    async with running_site(tmp_path, smoke_site, web=False) as rt:
        path = await bluez.add_device(SMOKE, "smoke")
        slot = rt.slots["smoke-3f"]
        driver = slot.driver
        latest = rt.hub.latest
        await bluez.advertise(path, {SERVICE_UUID: sealed(500, True)})
        await until(lambda: POINT in latest, what="the first packet")
        # a new battery: the counter starts again from 1; the first one is sent twice
        for n, counter in enumerate((1, 1, 2)):
            await bluez.advertise(path, {SERVICE_UUID: sealed(counter, False)}, rssi=-61 - n)
            await until(reaches(driver.counters, "replayed", n + 1), what=f"counter {counter} refused")
        assert latest[POINT].value is True  # 1, 1, 2 is two distinct counters: not yet a restart
        await bluez.advertise(path, {SERVICE_UUID: sealed(3, False)}, rssi=-65)
        await until(lambda: latest[POINT].value is False, what="the restart believed")
        assert driver.counters["counter_restarts"] == 1 and driver.counters["replayed"] == 3
        assert slot.health.state == HealthState.ONLINE
        # from now on the restarted counter is the one that must grow
        await bluez.advertise(path, {SERVICE_UUID: sealed(2, True)}, rssi=-66)
        await until(lambda: driver.counters["replayed"] == 4, what="an older counter refused again")
        assert latest[POINT].value is False


async def test_the_latest_packet_reported_again_is_a_duplicate_not_a_replay(
    tmp_path: Path, bluez: MockBluez, smoke_site: dict[str, Any]
) -> None:
    async with running_site(tmp_path, smoke_site, web=False) as rt:
        path = await bluez.add_device(SMOKE, "smoke")
        slot = rt.slots["smoke-3f"]
        driver = slot.driver
        await bluez.advertise(path, {SERVICE_UUID: sealed(500, False)})
        await until(lambda: driver.counters["packets"] == 1, what="the first packet")
        for n in range(3):  # BlueZ reports the same service data again with every RSSI change
            await bluez.advertise(path, {SERVICE_UUID: sealed(500, False)}, rssi=-50 - n)
            await until(reaches(driver.counters, "duplicates", n + 1), what=f"repeat {n + 1}")
        assert driver.counters["replayed"] == 0 and slot.health.errors == 0
        assert slot.health.state == HealthState.ONLINE
