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


def thermometer(**extra: Any) -> dict[str, Any]:
    return {
        "id": "hall-climate",
        "profile": "ble-pvvx-thermometer",
        "address": THERMO,
        "adapter": ADAPTER,
        **extra,
    }


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
    site = {
        "devices": [
            {
                "id": "cart-7",
                "driver": "ble",
                "mode": "eddystone",
                "adapter": ADAPTER,
                "beacon": {"namespace": NAMESPACE},
            }
        ]
    }
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
