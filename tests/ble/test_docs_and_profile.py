"""docs/ble.md's example site and the BTHome profile validate, and the profile's points map to
objects the decoder produces (a profile naming a missing object would read nothing)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from drivers.ble.bthome import OBJECT_NAMES
from drivers.ble.config import EXTRA_OBJECTS, BleDevice
from edge.config import load_site_text

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_device_entries_validate() -> None:
    text = (ROOT / "docs" / "ble.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(devices:.*?)```", text, re.S)
    assert block is not None
    site = load_site_text("site: {id: doc-site}\n" + block.group(1), "docs/ble.md")
    by_id = {d.id: d for d in site.devices}
    assert isinstance(by_id["kiosk-bp"], BleDevice) and by_id["kiosk-bp"].mode == "gatt"
    meter = by_id["glucose-r0042"]
    assert isinstance(meter, BleDevice) and meter.services == ["glucose"] and meter.resident == "r-0042"
    assert isinstance(by_id["kiosk-spo2"], BleDevice) and by_id["kiosk-spo2"].services == ["pulse_oximeter"]
    assert [p.name for p in site.device("bin-west-1").points][:3] == ["distance_mm", "temperature", "battery"]
    cart, ruuvi = by_id["cart-7"], by_id["hall-climate"]
    assert isinstance(cart, BleDevice) and cart.address is None and cart.beacon is not None
    assert isinstance(ruuvi, BleDevice) and ruuvi.mode == "advert"
    assert [(p.name, p.unit) for p in ruuvi.point_infos()] == [("present", ""), ("temp", "°C")]


def test_the_bthome_profile_maps_known_objects() -> None:
    profile = yaml.safe_load((ROOT / "drivers" / "profiles" / "bthome-bin-sensor.yaml").read_text())
    assert profile["driver"] == "ble"
    for point in profile["points"]:
        assert point["object"] in OBJECT_NAMES or point["object"] in EXTRA_OBJECTS
