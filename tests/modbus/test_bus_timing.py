"""Devices sharing one RS-485 bus (here: one serial server) keep their own timeout and retries."""

from __future__ import annotations

import asyncio
from typing import Any

from pymodbus.framer import FramerType

from drivers.modbus import codec
from tests.modbus.harness import running_driver
from tests.modbus.servers import TcpServer
from tests.support.waiting import until as wait_for


class _Always:
    """Stands in for the server's `stall` switch: every request is held..."""

    def is_set(self) -> bool:
        return True


class _Delay:
    """...for a fixed time, like a slow meter answering late (the simulated device's behaviour)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def wait(self) -> None:
        await asyncio.sleep(self.seconds)

    def set(self) -> None:
        pass


async def test_each_device_on_a_shared_bus_uses_its_own_timeout() -> None:
    regs = {i: r for i, r in enumerate(codec.encode(42, "uint16"))}
    srv = TcpServer({1: {"holding": regs}, 2: {"holding": regs}}, framer=FramerType.RTU)
    srv.faults.stall, srv.faults.unstall = _Always(), _Delay(0.5)  # type: ignore[assignment]
    await srv.start()
    try:
        conn = {"transport": "rtu_over_tcp", "host": "127.0.0.1", "port": srv.port}
        points = [{"name": "v", "address": 0, "type": "uint16"}]
        # the impatient device joins the bus first: its 0.2 s must not become the patient one's
        quick: dict[str, Any] = {
            "id": "quick",
            "connection": conn,
            "unit": 2,
            "poll": 0.1,
            "timeout": 0.2,
            "retries": 0,
            "points": points,
        }
        patient: dict[str, Any] = {
            "id": "patient",
            "connection": conn,
            "unit": 1,
            "poll": 0.1,
            "timeout": 3.0,
            "retries": 0,
            "points": points,
        }
        async with running_driver(quick) as q, running_driver(patient) as p:
            assert q.driver.link is p.driver.link
            await p.polled(2, timeout=30)
            assert p.values() == {"v": 42} and p.driver.health.state == "online"
            await wait_for(
                lambda: q.driver.health.state == "offline", timeout=30, what="quick device offline"
            )
            assert "no valid answer from unit 2" in q.driver.health.reason
    finally:
        await srv.stop()
