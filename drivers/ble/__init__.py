"""BLE driver: BTHome v2 advertisements through one shared scanner per adapter, and the GATT
health services (blood pressure, weight, body temperature) of kiosk instruments.

The manifest (plugin.py) declares the driver; config.py validates the device entries. bleak is
imported only when a scan starts or a connection is made, so `edge check` of a BLE site stays cheap.
"""
