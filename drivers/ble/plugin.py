"""The BLE manifest: `driver: ble` (BTHome advertisements, GATT health services). bleak comes with
the `ble` extra."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.plugins import Plugin, Spec

if TYPE_CHECKING:
    from pydantic import BaseModel

    from edge.driver import Driver


def device_model() -> type[BaseModel]:
    from drivers.ble.config import BleDevice

    return BleDevice


def driver() -> type[Driver]:
    from drivers.ble.driver import BleDriver

    return BleDriver


PLUGIN = Plugin(name="ble", extra="ble", requires=("bleak",), drivers={"ble": Spec(device_model, driver)})
