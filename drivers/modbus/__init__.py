"""Modbus driver: TCP, RTU and RTU over TCP; coalesced polling, writes, profiles, server mode.

The manifest (plugin.py) declares the driver, the `modbus_server:` section and `edge modbus`;
config.py validates the device entries. pymodbus is imported only when a connection is made (see
transport.py), so `edge check` of a Modbus site stays cheap.
"""
