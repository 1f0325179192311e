"""One BleakScanner per adapter, shared by every BLE device of the site, dispatching by address.

A radio scans for everyone at once: a scanner per device would ask BlueZ for a discovery session
each and see every advertisement many times. The first device on an adapter starts its scanner,
the last one to leave stops it. Advertisements from addresses no device claims are counted and
offered to the beacons matched by their ids (whose address rotates), then dropped (a busy site
hears phones, watches and the neighbours' kettles).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("edge.driver.ble")

#: called with (bleak BLEDevice, bleak AdvertisementData) for each advertisement of one address
Listener = Callable[[Any, Any], None]


class SharedScanner:
    """The scanner of one adapter (None: bleak's default adapter) and its listeners by address."""

    def __init__(self, adapter: str | None) -> None:
        self.adapter = adapter
        self.listeners: dict[str, Listener] = {}
        #: beacons matched by their ids (their address rotates): offered every unclaimed advertisement
        self.by_ids: dict[str, Listener] = {}
        self.advertisements = 0  # every advertisement heard
        self.unclaimed = 0  # ...from addresses no device of the site has
        self._scanner: Any = None
        self._lock = asyncio.Lock()

    def dispatch(self, device: Any, adv: Any) -> None:
        """bleak's detection callback: hand the advertisement to the device with that address."""
        self.advertisements += 1
        listener = self.listeners.get(device.address.upper())
        if listener is None:
            self.unclaimed += 1
            for beacon in self.by_ids.values():
                beacon(device, adv)
            return
        listener(device, adv)

    async def add(self, address: str, listener: Listener) -> None:
        """Listen for `address` (upper case); starts scanning for the first listener."""
        await self._add(
            self.listeners,
            address,
            listener,
            f"BLE address {address} is already used by another device of this site",
        )

    async def add_by_ids(self, device_id: str, listener: Listener) -> None:
        """Offer `listener` every advertisement no address claims (a beacon matched by its ids)."""
        await self._add(self.by_ids, device_id, listener, f"device {device_id} already listens")

    async def _add(self, table: dict[str, Listener], key: str, listener: Listener, taken: str) -> None:
        async with self._lock:  # checked and taken in one step: two devices starting at once
            if key in table:
                raise ValueError(taken)
            table[key] = listener
            try:
                await self._start()
            except BaseException:
                table.pop(key, None)
                raise

    async def _start(self) -> None:
        if self._scanner is not None:
            return
        from bleak import BleakScanner

        scanner = BleakScanner(self.dispatch, bluez={"adapter": self.adapter} if self.adapter else {})
        await scanner.start()
        self._scanner = scanner
        log.info("BLE scanning started on %s", self.adapter or "the default adapter")

    async def remove(self, address: str) -> None:
        """Stop listening for `address`; the last listener stops the scan."""
        async with self._lock:
            self.listeners.pop(address, None)
            await self._stop_if_idle()

    async def remove_by_ids(self, device_id: str) -> None:
        """Stop offering unclaimed advertisements to the beacon `device_id`."""
        async with self._lock:
            self.by_ids.pop(device_id, None)
            await self._stop_if_idle()

    async def _stop_if_idle(self) -> None:
        if self.listeners or self.by_ids or self._scanner is None:
            return
        scanner, self._scanner = self._scanner, None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await scanner.stop()
        log.info("BLE scanning stopped on %s", self.adapter or "the default adapter")

    @property
    def scanning(self) -> bool:
        return self._scanner is not None


# bleak's BlueZ manager lives in one event loop; so do the scanners built on it
_scanners: dict[tuple[asyncio.AbstractEventLoop, str | None], SharedScanner] = {}


def scanner_for(adapter: str | None) -> SharedScanner:
    """The shared scanner of `adapter` in the running event loop."""
    loop = asyncio.get_running_loop()
    for key in [k for k in _scanners if k[0].is_closed()]:
        del _scanners[key]
    key = (loop, adapter)
    if key not in _scanners:
        _scanners[key] = SharedScanner(adapter)
    return _scanners[key]
