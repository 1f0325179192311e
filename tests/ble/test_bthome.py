"""BTHome sensors through the whole stack: the mock BlueZ advertises, bleak's real BlueZ backend
scans, the shared scanner dispatches by address, the driver decodes, the runtime's hub has the
readings. Each test fails if its feature breaks (values, de-duplication, counting, dispatch,
staleness)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drivers.ble.bthome import SERVICE_UUID
from drivers.ble.scanner import scanner_for
from edge.model import Event, HealthState, Quality
from tests.ble.bluez import ADAPTER, MockBluez
from tests.support.site import running_site
from tests.support.waiting import until

BIN = "A4:C1:38:00:00:01"
CLIMATE = "A4:C1:38:00:00:02"
EXAMPLE = bytes.fromhex("40 01 61 02 29 09 03 7c 15")  # battery 97 %, 23.45 degC, 55.00 % RH


def bin_site(**extra: Any) -> dict[str, Any]:
    device = {
        "id": "bin-east-1",
        "driver": "ble",
        "address": BIN.lower(),  # the site file may write it in lower case
        "adapter": ADAPTER,
        "points": [
            {"name": "fill_distance", "object": "distance_mm"},
            {"name": "battery", "object": "battery"},
            {"name": "signal", "object": "rssi"},
        ],
        **extra,
    }
    return {"devices": [device]}


def device_states(records: list[Any]) -> list[Event]:
    return [e for e in records if isinstance(e, Event) and e.kind == "device_state"]


async def test_advertisement_becomes_readings(tmp_path: Path, bluez: MockBluez) -> None:
    async with running_site(tmp_path, bin_site(), web=False) as rt:
        path = await bluez.add_device(BIN, "bin")
        # packet id 7, battery 88 %, distance 1234 mm
        await bluez.advertise(path, {SERVICE_UUID: bytes.fromhex("40 00 07 01 58 40 d2 04")}, rssi=-71)
        latest = rt.hub.latest
        await until(lambda: "bin-east-1.fill_distance" in latest, what="a reading")
        assert latest["bin-east-1.fill_distance"].value == 1234
        assert latest["bin-east-1.battery"].value == 88
        assert latest["bin-east-1.signal"].value == -71
        assert latest["bin-east-1.fill_distance"].quality == Quality.GOOD
        info = rt.hub.points["bin-east-1.fill_distance"]
        assert info.unit == "mm"
        slot = rt.slots["bin-east-1"]
        assert slot.health.state == HealthState.ONLINE
        assert slot.driver.counters["packets"] == 1


async def test_same_packet_id_is_dropped_and_a_new_one_is_not(tmp_path: Path, bluez: MockBluez) -> None:
    async with running_site(tmp_path, bin_site(), web=False) as rt:
        path = await bluez.add_device(BIN)
        driver = rt.slots["bin-east-1"].driver
        await bluez.advertise(path, {SERVICE_UUID: bytes.fromhex("40 00 07 40 d2 04")})
        await until(lambda: driver.counters["packets"] == 1, what="first packet")
        # BlueZ reports the same service data again with a new RSSI: same packet id
        await bluez.advertise(path, {SERVICE_UUID: bytes.fromhex("40 00 07 40 d2 04")}, rssi=-50)
        await until(lambda: driver.counters["duplicates"] == 1, what="duplicate counted")
        assert driver.counters["packets"] == 1
        assert rt.hub.latest["bin-east-1.signal"].value == -60  # the duplicate changed nothing
        await bluez.advertise(path, {SERVICE_UUID: bytes.fromhex("40 00 08 40 10 27")})
        await until(lambda: rt.hub.latest["bin-east-1.fill_distance"].value == 10000, what="next packet")
        assert driver.counters["packets"] == 2
        # the counters reach /metrics (read here through the collector the endpoint serves)
        from edge.api.metrics import RuntimeCollector

        family = next(f for f in RuntimeCollector(rt).collect() if f.name == "edge_driver_count")
        counts = {(s.labels["device"], s.labels["counter"]): s.value for s in family.samples}
        assert counts[("bin-east-1", "duplicates")] == 1 and counts[("bin-east-1", "packets")] == 2


async def test_garbage_is_counted_and_reported_and_the_device_recovers(
    tmp_path: Path, bluez: MockBluez
) -> None:
    async with running_site(tmp_path, bin_site(), web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        path = await bluez.add_device(BIN)
        slot = rt.slots["bin-east-1"]
        driver = slot.driver
        await bluez.advertise(path, {SERVICE_UUID: bytes.fromhex("40 00 01 40 d2 04")})
        await until(lambda: driver.counters["packets"] == 1, what="good packet")
        for n, garbage in enumerate((b"\x40\x02\x29", b"\x20\x01\x61", b"", b"\x40\x00\x02\x40\x05")):
            await bluez.advertise(path, {SERVICE_UUID: garbage})
            await until(lambda n=n: driver.counters["garbage"] == n + 1, what=f"garbage {garbage!r} counted")
        assert slot.health.state == HealthState.DEGRADED
        assert "bad BTHome data" in slot.health.reason and "4 garbage" in slot.health.reason
        assert "needs 2 bytes" in slot.health.reason  # the last one: distance cut short
        assert slot.health.errors >= 4
        assert rt.slots["bin-east-1"].restarts == 0  # never an exception out of the driver
        # an unknown object: what came before it is kept, the rest counted
        await bluez.advertise(path, {SERVICE_UUID: bytes.fromhex("40 00 03 01 50 fe 01 02")})
        await until(lambda: driver.counters["unknown_objects"] == 1, what="unknown object counted")
        assert rt.hub.latest["bin-east-1.battery"].value == 80
        assert "0xfe" in slot.health.reason
        await bluez.advertise(path, {SERVICE_UUID: bytes.fromhex("40 00 04 40 d3 04")})
        await until(lambda: slot.health.state == HealthState.ONLINE, what="online again")
        await until(lambda: any(e.payload["state"] == "online" for e in device_states(seen)), what="event")
        assert [e.payload["state"] for e in device_states(seen)] == ["degraded", "online"]


async def test_encrypted_packet_is_rejected_with_a_counted_reason(tmp_path: Path, bluez: MockBluez) -> None:
    async with running_site(tmp_path, bin_site(), web=False) as rt:
        path = await bluez.add_device(BIN)
        slot = rt.slots["bin-east-1"]
        await bluez.advertise(path, {SERVICE_UUID: bytes.fromhex("41 a4 72 66 c9 5f 73 11 22 33 44 55")})
        await until(lambda: slot.driver.counters["encrypted"] == 1, what="encrypted counted")
        assert slot.health.state == HealthState.DEGRADED
        assert "encrypted" in slot.health.reason
        assert "bin-east-1.battery" not in rt.hub.latest


async def test_two_devices_are_dispatched_by_address_through_one_scan(
    tmp_path: Path, bluez: MockBluez
) -> None:
    site = bin_site()
    site["devices"].append(
        {"id": "climate-hall", "driver": "ble", "address": CLIMATE, "adapter": ADAPTER}  # default map
    )
    async with running_site(tmp_path, site, web=False) as rt:
        scanner = scanner_for(ADAPTER)
        assert scanner.scanning and set(scanner.listeners) == {BIN, CLIMATE}
        assert await bluez.property(f"/org/bluez/{ADAPTER}", "org.bluez.Adapter1", "Discovering") is True
        bin_path = await bluez.add_device(BIN)
        climate_path = await bluez.add_device(CLIMATE)
        stranger = await bluez.add_device("11:22:33:44:55:66", "a phone")
        await bluez.advertise(climate_path, {SERVICE_UUID: EXAMPLE})
        await bluez.advertise(bin_path, {SERVICE_UUID: bytes.fromhex("40 00 01 01 20 40 e8 03")})
        await bluez.advertise(stranger, {SERVICE_UUID: EXAMPLE})
        latest = rt.hub.latest
        await until(lambda: "climate-hall.humidity" in latest and "bin-east-1.battery" in latest)
        assert latest["climate-hall.battery"].value == 97
        assert latest["climate-hall.temperature"].value == 23.45
        assert latest["climate-hall.humidity"].value == 55.0
        assert latest["bin-east-1.battery"].value == 32
        assert latest["bin-east-1.fill_distance"].value == 1000
        assert not any(p.startswith("bin-east-1.temp") for p in latest)
        # the default map registered the objects it found as points, with their units
        assert rt.hub.points["climate-hall.temperature"].unit == "°C"
        await until(lambda: scanner.unclaimed >= 1, what="the stranger's advertisement dropped")
    assert not scanner.scanning  # the last device stopped the scan
    assert await bluez.property(f"/org/bluez/{ADAPTER}", "org.bluez.Adapter1", "Discovering") is False


async def test_silence_takes_the_device_offline_and_an_advertisement_brings_it_back(
    tmp_path: Path, bluez: MockBluez
) -> None:
    async with running_site(tmp_path, bin_site(stale_after="1s"), web=False) as rt:
        path = await bluez.add_device(BIN)
        slot = rt.slots["bin-east-1"]
        latest = rt.hub.latest
        await bluez.advertise(path, {SERVICE_UUID: bytes.fromhex("40 00 01 40 d2 04")})
        await until(lambda: "bin-east-1.fill_distance" in latest, what="a reading")
        await until(lambda: slot.health.state == HealthState.OFFLINE, timeout=5, what="offline")
        assert f"no advertisement from {BIN} for 1s" in slot.health.reason
        await until(lambda: latest["bin-east-1.fill_distance"].quality == Quality.STALE, what="stale")
        assert latest["bin-east-1.fill_distance"].value == 1234  # last value kept, marked stale
        await bluez.advertise(path, {SERVICE_UUID: bytes.fromhex("40 00 02 40 d3 04")})
        await until(lambda: slot.health.state == HealthState.ONLINE, what="online again")
        assert latest["bin-east-1.fill_distance"].value == 1235
        assert latest["bin-east-1.fill_distance"].quality == Quality.GOOD


async def test_encrypted_sensor_with_its_bind_key_is_decrypted_and_replays_are_dropped(
    tmp_path: Path, bluez: MockBluez, monkeypatch: Any
) -> None:
    from drivers.ble.bthome import encrypt

    key = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
    monkeypatch.setenv("EDGE_TEST_BINDKEY", key.hex())
    async with running_site(tmp_path, bin_site(bind_key_env="EDGE_TEST_BINDKEY"), web=False) as rt:
        path = await bluez.add_device(BIN)
        slot = rt.slots["bin-east-1"]
        latest = rt.hub.latest

        def sealed(distance: int, counter: int, with_key: bytes = key) -> bytes:
            return encrypt(bytes([0x40]) + distance.to_bytes(2, "little"), with_key, BIN, counter)

        await bluez.advertise(path, {SERVICE_UUID: sealed(800, 10)})
        await until(lambda: "bin-east-1.fill_distance" in latest, what="a decrypted reading")
        assert latest["bin-east-1.fill_distance"].value == 800
        await bluez.advertise(path, {SERVICE_UUID: sealed(700, 10)}, rssi=-60)  # the same counter again
        await until(lambda: slot.driver.counters["replayed"] == 1, what="the replay counted")
        await bluez.advertise(path, {SERVICE_UUID: sealed(600, 11, bytes(16))}, rssi=-61)  # wrong key
        await until(lambda: slot.driver.counters["encrypted"] == 1, what="the forgery counted")
        assert "does not authenticate" in slot.health.reason
        await bluez.advertise(path, {SERVICE_UUID: sealed(500, 12)}, rssi=-62)
        await until(lambda: latest["bin-east-1.fill_distance"].value == 500, what="the next packet")
        assert slot.driver.counters["packets"] == 2 and slot.health.state == HealthState.ONLINE


async def test_a_missing_bind_key_variable_is_the_devices_error(tmp_path: Path, bluez: MockBluez) -> None:
    async with running_site(tmp_path, bin_site(bind_key_env="EDGE_TEST_NO_SUCH_KEY"), web=False) as rt:
        slot = rt.slots["bin-east-1"]
        await until(lambda: "EDGE_TEST_NO_SUCH_KEY" in (slot.health.reason or ""), what="the reason")
        assert slot.health.state != HealthState.ONLINE
