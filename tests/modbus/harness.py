"""Run a Modbus driver directly (without the runtime) and collect what it emits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from drivers.modbus.config import ModbusDevice
from drivers.modbus.driver import ModbusDriver
from edge.driver import DriverContext
from edge.model import Event, Reading, Record


class Collected:
    def __init__(self, driver: ModbusDriver) -> None:
        self.driver = driver
        self.records: list[Record] = []

    def drained(self) -> bool:
        return self.driver._queue.empty()

    async def polled(self, cycles: int = 1, timeout: float = 10.0) -> None:
        """Wait until `cycles` poll cycles completed and their readings were collected."""
        from tests.support.waiting import until as wait_for

        await wait_for(
            lambda: self.driver.cycles >= cycles and self.drained(),
            timeout=timeout,
            what=f"{cycles} poll cycles",
        )

    def latest(self, name: str) -> Reading | None:
        pid = f"{self.driver.id}.{name}"
        for r in reversed(self.records):
            if isinstance(r, Reading) and r.point == pid:
                return r
        return None

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for r in self.records:
            if isinstance(r, Reading):
                out[r.point.split(".", 1)[1]] = r.value
        return out

    def events(self, kind: str) -> list[Event]:
        return [r for r in self.records if isinstance(r, Event) and r.kind == kind]


def device(doc: dict[str, Any]) -> ModbusDevice:
    doc = {"id": "dev", "driver": "modbus", **doc}
    return ModbusDevice.model_validate(doc)


@contextlib.asynccontextmanager
async def running_driver(doc: dict[str, Any]) -> AsyncIterator[Collected]:
    dev = device(doc)
    ctx = DriverContext("test", "/tmp", logging.getLogger(f"test.{dev.id}"), time.time)
    driver = ModbusDriver(dev, ctx)
    got = Collected(driver)

    async def pump() -> None:
        async for batch in driver.stream():
            got.records.extend(batch)

    await driver.start()
    task = asyncio.create_task(pump())
    try:
        yield got
    finally:
        await driver.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def slow_device(srv: Any, hold: float = 0.05) -> AsyncIterator[None]:
    """The test server holds every request for `hold` seconds, one after another: a slow poll
    cycle, so a test can check what waits behind it."""

    async def pace() -> None:
        while True:
            srv.faults.stall.set()
            srv.faults.unstall.clear()
            await asyncio.sleep(hold)
            srv.faults.unstall.set()
            await asyncio.sleep(0)

    pacer = asyncio.create_task(pace())
    try:
        yield
    finally:
        pacer.cancel()
        srv.faults.stall.clear()
        srv.faults.unstall.set()
