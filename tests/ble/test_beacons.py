"""Beacons and vendor sensors through the whole stack: the mock BlueZ advertises, bleak's real
BlueZ backend scans, the shared scanner dispatches (by address, or to beacons matched by their ids),
the driver reads each advertisement with its AdvertWatch, the hub has the readings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drivers.ble import adverts
from drivers.ble.adverts import EddystoneTLM, EddystoneUID
from drivers.ble.mfr import full_uuid
from drivers.ble.scanner import scanner_for
from edge.config import load_site_text
from edge.model import HealthState, Quality
from edge.validation import ConfigError
from tests.ble.bluez import ADAPTER, MockBluez
from tests.support.site import running_site
from tests.support.waiting import until

THERMO = "A4:C1:38:8C:41:93"
ENV_SENSING = full_uuid("181a")
PVVX = bytes.fromhex("93 41 8c 38 c1 a4 ac 08 9e 14 a0 0b 64 88 04")  # 22.20 degC, 52.78 %, counter 136
NAMESPACE = "12345678901234678901"
RUUVI_TAG = "CB:B8:33:4C:88:4F"
RUUVI = 0x0499
# the "valid data" test vector of Ruuvi's data format 5 specification
RUUVI_VALID = bytes.fromhex("05 12 fc 53 94 c3 7c 00 04 ff fc 04 0c ac 36 42 00 cd cb b8 33 4c 88 4f")
CART_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"


def thermometer(**extra: Any) -> dict[str, Any]:
    return {
        "id": "hall-climate",
        "profile": "ble-pvvx-thermometer",
        "address": THERMO,
        "adapter": ADAPTER,
        **extra,
    }


def cart_site(mode: str, **ids: Any) -> dict[str, Any]:
    """A site with one beacon, `cart-7`, matched by its ids (no address)."""
    return {"devices": [{"id": "cart-7", "driver": "ble", "mode": mode, "adapter": ADAPTER, "beacon": ids}]}


async def test_vendor_layout_becomes_readings_and_repeats_are_dropped(
    tmp_path: Path, bluez: MockBluez
) -> None:
    async with running_site(tmp_path, {"devices": [thermometer()]}, web=False) as rt:
        path = await bluez.add_device(THERMO, "ATC_8C4193")
        driver = rt.slots["hall-climate"].driver
        latest = rt.hub.latest
        await bluez.advertise(path, {ENV_SENSING: PVVX}, rssi=-66)
        await until(lambda: "hall-climate.temperature" in latest, what="a reading")
        assert latest["hall-climate.temperature"].value == 22.2
        assert latest["hall-climate.humidity"].value == 52.78
        assert latest["hall-climate.present"].value is True and latest["hall-climate.rssi"].value == -66
        assert rt.hub.points["hall-climate.battery_mv"].unit == "mV"
        await bluez.advertise(path, {ENV_SENSING: PVVX}, rssi=-50)  # the same counter: the same packet
        await until(lambda: driver.counters["duplicates"] == 1, what="the repeat dropped")
        await bluez.advertise(path, {ENV_SENSING: PVVX[:9]}, rssi=-51)
        await until(lambda: driver.counters["garbage"] == 1, what="a short payload counted")
        slot = rt.slots["hall-climate"]
        assert slot.health.state == HealthState.DEGRADED and "15" in slot.health.reason
        assert slot.restarts == 0


async def test_silent_beacon_is_absent_and_its_values_stale(tmp_path: Path, bluez: MockBluez) -> None:
    async with running_site(tmp_path, {"devices": [thermometer(stale_after="1s")]}, web=False) as rt:
        path = await bluez.add_device(THERMO)
        latest = rt.hub.latest
        await bluez.advertise(path, {ENV_SENSING: PVVX})
        await until(lambda: "hall-climate.temperature" in latest, what="a reading")
        await until(lambda: latest["hall-climate.present"].value is False, timeout=5, what="absent")
        assert latest["hall-climate.present"].quality == Quality.GOOD  # absence is a fact
        assert latest["hall-climate.temperature"].quality == Quality.STALE
        assert latest["hall-climate.temperature"].value == 22.2


async def test_eddystone_matched_by_namespace_across_addresses(tmp_path: Path, bluez: MockBluez) -> None:
    site = cart_site("eddystone", namespace=NAMESPACE)
    uid = adverts.encode_eddystone(EddystoneUID(NAMESPACE, "000000000007", -20))
    tlm = adverts.encode_eddystone(EddystoneTLM(2840, 19.0, 5223, 1094.8))
    async with running_site(tmp_path, site, web=False) as rt:
        latest = rt.hub.latest
        first = await bluez.add_device("C4:7C:8D:00:00:01")
        other = await bluez.add_device("C4:7C:8D:00:00:09")
        await bluez.advertise(other, tlm)  # nobody's UID yet: not the cart's telemetry
        await bluez.advertise(first, uid)
        await until(lambda: "cart-7.instance" in latest, what="the UID frame")
        assert latest["cart-7.instance"].value == "000000000007"
        await bluez.advertise(first, tlm)
        await until(lambda: "cart-7.battery_mv" in latest, what="the TLM frame")
        assert latest["cart-7.temperature"].value == 19.0 and latest["cart-7.uptime"].value == 1094.8
        assert (
            rt.slots["cart-7"].driver.counters["advertisements"] == 2
        )  # the other address's frame was not ours


def test_site_file_checks_name_the_key() -> None:
    text = f"""site: {{id: t}}
devices:
  - {{id: a, driver: ble, mode: ibeacon}}
  - {{id: b, driver: ble, mode: eddystone, beacon: {{uuid: f7826da6-4fa2-4e98-8024-bc5b71e0893e}}}}
  - {{id: c, driver: ble, mode: advert, address: {THERMO}}}
  - {{id: d, profile: ble-pvvx-thermometer, address: A4:C1:38:8C:41:94, points: [{{name: t, object: temp}}]}}
  - {{id: e, driver: ble, mode: ibeacon, beacon: {{uuid: f7826da6-4fa2-4e98-8024-bc5b71e0893e, major: 70000}}}}
"""
    with pytest.raises(ConfigError) as info:
        load_site_text(text, "site.yaml")
    problems = [str(p) for p in info.value.problems]
    assert any(p.startswith("site.yaml:3: devices[0]: address: is required") for p in problems), problems
    assert any("devices[1]: beacon: of mode eddystone is namespace:" in p for p in problems), problems
    assert any("devices[2]: mode advert reads the layout of its profile" in p for p in problems), problems
    assert any("devices[3].points[0].object: unknown point 'temp'" in p for p in problems), problems
    assert any("devices[4].beacon.major" in p for p in problems), problems
    assert len(problems) == 5, problems


async def test_ruuvi_manufacturer_data_through_bluez(tmp_path: Path, bluez: MockBluez) -> None:
    site = {
        "devices": [
            {"id": "hall-ruuvi", "profile": "ble-ruuvi-rawv2", "address": RUUVI_TAG, "adapter": ADAPTER}
        ]
    }
    async with running_site(tmp_path, site, web=False) as rt:
        path = await bluez.add_device(RUUVI_TAG, "Ruuvi 884F")
        driver = rt.slots["hall-ruuvi"].driver
        latest = rt.hub.latest
        await bluez.advertise(path, manufacturer_data={RUUVI: RUUVI_VALID}, rssi=-58)
        await until(lambda: "hall-ruuvi.temperature" in latest, what="the RAWv2 reading")
        got = {
            k.removeprefix("hall-ruuvi."): r.value for k, r in latest.items() if k.startswith("hall-ruuvi.")
        }
        assert got == {
            "present": True,
            "rssi": -58,
            "temperature": 24.3,
            "humidity": 53.49,
            "pressure": 1000.44,
            "acceleration_x": 0.004,
            "acceleration_y": -0.004,
            "acceleration_z": 1.036,
            "battery_mv": 2977,
            "tx_power": 4,
            "movement_count": 66,
            "sequence": 205,
            "mac": RUUVI_TAG,
        }
        assert rt.hub.points["hall-ruuvi.pressure"].unit == "hPa"
        # data format 3 (RAWv1) under the same company id: claimed, unreadable, counted
        await bluez.advertise(
            path, manufacturer_data={RUUVI: bytes.fromhex("03 29 1a 1e ce 1e fc 18 f9 42 02 ca 0b 53")}
        )
        await until(lambda: driver.counters["garbage"] == 1, what="RAWv1 counted as garbage")
        slot = rt.slots["hall-ruuvi"]
        assert slot.health.state == HealthState.DEGRADED and "0x0499" in slot.health.reason
        assert latest["hall-ruuvi.temperature"].value == 24.3  # nothing made up from it
        assert driver.counters["packets"] == 1


async def test_ibeacon_matched_by_its_ids_whatever_its_address(tmp_path: Path, bluez: MockBluez) -> None:
    site = cart_site("ibeacon", uuid=CART_UUID.upper(), major=1)
    cart = adverts.encode_ibeacon(adverts.IBeacon(CART_UUID, 1, 7, -59))
    other_major = adverts.encode_ibeacon(adverts.IBeacon(CART_UUID, 2, 7, -59))
    stranger = adverts.encode_ibeacon(adverts.IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 7, -59))
    async with running_site(tmp_path, site, web=False) as rt:
        scanner = scanner_for(ADAPTER)
        assert scanner.scanning and set(scanner.by_ids) == {"cart-7"} and not scanner.listeners
        driver = rt.slots["cart-7"].driver
        latest = rt.hub.latest
        first = await bluez.add_device("5A:11:22:33:44:01", "")
        rotated = await bluez.add_device("6B:11:22:33:44:02", "")
        phone = await bluez.add_device("7C:11:22:33:44:03", "")
        await bluez.advertise(phone, manufacturer_data=stranger, rssi=-40)
        await bluez.advertise(phone, manufacturer_data=other_major, rssi=-41)
        await bluez.advertise(first, manufacturer_data=cart, rssi=-59)
        await until(lambda: "cart-7.minor" in latest, what="the cart's iBeacon")
        assert latest["cart-7.major"].value == 1 and latest["cart-7.rssi"].value == -59
        assert latest["cart-7.distance_m"].value == 1.0  # rssi = the measured power at 1 m
        await bluez.advertise(rotated, manufacturer_data=cart, rssi=-79)
        await until(lambda: latest["cart-7.rssi"].value == -79, what="the cart at its new address")
        assert latest["cart-7.distance_m"].value == 10.0
        # the phone's two iBeacons (another uuid, another major) were never the cart's
        assert driver.counters["advertisements"] == 2 and driver.counters["garbage"] == 0
        assert rt.slots["cart-7"].health.state == HealthState.ONLINE
    assert not scanner.scanning and not scanner.by_ids  # the beacon's leaving stopped the scan
