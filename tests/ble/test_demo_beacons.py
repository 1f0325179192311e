"""The demo's simulated beacons (`driver: demo_ble`, edge/demo/kiosk.py): the demo site's own
entries, made fast, run in a real runtime; their made-up advertisements go through the BLE
driver (decoders, de-duplication, presence), so the hub gets what a radio's would give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config import load_site_text
from edge.demo.site import demo_site
from edge.model import HealthState, Quality
from edge.validation import ConfigError
from tests.support.site import running_site
from tests.support.waiting import until


def demo_beacons(tmp_path: Path) -> list[dict[str, Any]]:
    """The demo site's simulated BLE devices, advertising every 20 ms, the tag away every 0.6 s."""
    devices = [d for d in demo_site(tmp_path)["devices"] if d.get("driver") == "demo_ble"]
    assert {d["id"] for d in devices} == {"kiosk-wheelchair", "corridor-climate"}
    for d in devices:
        d["every"] = 0.02
        if d.get("away_every"):
            d.update(away_every=0.6, stale_after=0.3)
    return devices


async def test_demo_beacons_go_through_the_ble_driver(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": demo_beacons(tmp_path)}, web=False) as rt:
        latest = rt.hub.latest
        thermo = rt.slots["corridor-climate"].driver
        await until(lambda: "corridor-climate.temperature" in latest, what="the thermometer's reading")
        await until(lambda: thermo.counters["packets"] >= 3, what="three packets")
        assert latest["corridor-climate.mac"].value == "A4:C1:38:8C:41:93"  # the encoded bytes, decoded
        assert 16 <= latest["corridor-climate.temperature"].value <= 31
        assert 30 <= latest["corridor-climate.humidity"].value <= 85
        assert latest["corridor-climate.battery_mv"].value == 2980
        assert rt.hub.points["corridor-climate.temperature"].unit == "°C"
        assert thermo.counters["garbage"] == thermo.counters["duplicates"] == 0
        assert rt.slots["corridor-climate"].health.state == HealthState.ONLINE
        # the wheelchair tag: matched by its ids, present, then away (a good false), then back
        await until(lambda: "kiosk-wheelchair.distance_m" in latest, what="the tag's iBeacon")
        assert (
            latest["kiosk-wheelchair.major"].value == 1 and latest["kiosk-wheelchair.present"].value is True
        )
        await until(
            lambda: latest["kiosk-wheelchair.present"].value is False, timeout=10, what="the tag away"
        )
        assert latest["kiosk-wheelchair.present"].quality == Quality.GOOD
        assert latest["kiosk-wheelchair.rssi"].quality == Quality.STALE
        await until(lambda: latest["kiosk-wheelchair.present"].value is True, timeout=10, what="the tag back")


def test_a_simulated_device_advertises() -> None:
    text = """site: {id: t}
devices:
  - {id: a, driver: demo_ble, address: A4:C1:38:8C:41:93, every: 0s}
  - {id: b, driver: demo_ble, mode: gatt, address: A4:C1:38:8C:41:94, services: [weight]}
"""
    with pytest.raises(ConfigError) as info:
        load_site_text(text, "site.yaml")
    problems = [str(p) for p in info.value.problems]
    assert problems == [
        "site.yaml:3: devices[0]: a simulated BLE device is one of mode ibeacon, eddystone, advert",
        "site.yaml:4: devices[1]: a simulated BLE device is one of mode ibeacon, eddystone, advert",
    ], problems
