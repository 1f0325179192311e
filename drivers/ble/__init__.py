"""BLE driver: BTHome v2 advertisements through one shared scanner per adapter, and the GATT
health services (blood pressure, weight, body temperature) of kiosk instruments.

`DRIVER` is the Driver class the runtime loads for `driver: ble`; `BleDevice` validates the device
entries. bleak is imported only when a scan starts or a connection is made, so `edge check` of a
BLE site stays cheap.
"""

from __future__ import annotations

from drivers.ble.config import BleDevice, BlePoint
from drivers.ble.driver import BleDriver

DRIVER = BleDriver

__all__ = ["DRIVER", "BleDevice", "BleDriver", "BlePoint"]
