"""Modbus driver: TCP, RTU and RTU over TCP; coalesced polling, writes, profiles, server mode.

`DRIVER` is the Driver class the runtime loads for `driver: modbus`; `ModbusDevice` validates the
device entries. pymodbus is imported only when a connection is made (see transport.py), so
`edge check` of a Modbus site stays cheap.
"""

from __future__ import annotations

from drivers.modbus.config import Connection, ModbusDevice, ModbusPoint
from drivers.modbus.driver import ModbusDriver

DRIVER = ModbusDriver

__all__ = ["DRIVER", "Connection", "ModbusDevice", "ModbusDriver", "ModbusPoint"]
