"""RTU through a socat pty pair: two unit ids on one bus share one connection, never interleave."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus import codec
from tests.modbus.harness import running_driver
from tests.modbus.servers import Faults, sim_device, stop_process
from tests.support.tools import require_tool
from tests.support.waiting import until as wait_for


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[tuple[str, list[tuple[bool, bytes]]]]:
    socat = require_tool("socat", "apt-get install -y socat")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; socat runs beside the test
        [socat, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await wait_for(lambda: a.exists() and b.exists(), what="socat ptys")
        from pymodbus.server import ModbusSerialServer

        frames: list[tuple[bool, bytes]] = []

        def trace(sending: bool, data: bytes) -> bytes:
            frames.append((sending, data))
            return data

        faults = Faults()
        meter2 = {"input": {0: 0, **dict(enumerate(codec.encode(230.5, "float32"))), 2: 0, 3: 0}}
        meter3 = {"input": {0: 0, **dict(enumerate(codec.encode(399.25, "float32"))), 2: 0, 3: 0}}
        devices = [sim_device(2, meter2, faults), sim_device(3, meter3, faults)]
        server = ModbusSerialServer(devices, port=str(b), baudrate=9600, trace_packet=trace)
        await server.serve_forever(background=True)
        try:
            yield str(a), frames
        finally:
            await server.shutdown()
    finally:
        stop_process(proc)  # type: ignore[arg-type]


async def test_two_units_on_one_bus_never_interleave(bus: tuple[str, list[tuple[bool, bytes]]]) -> None:
    port, frames = bus
    points = [{"name": "voltage", "table": "input", "address": 0, "type": "float32"}]
    conn = {"transport": "rtu", "port": port, "baudrate": 9600, "frame_delay": "2ms"}
    events: list[tuple[str, int]] = []
    d2: dict[str, Any] = {"id": "m2", "connection": conn, "unit": 2, "poll": 0.02, "points": points}
    d3: dict[str, Any] = {"id": "m3", "connection": conn, "unit": 3, "poll": 0.02, "points": points}
    async with running_driver(d2) as m2, running_driver(d3) as m3:
        assert m2.driver.link is m3.driver.link  # one bus, one connection
        m2.driver.link.trace = lambda ev, unit: events.append((ev, unit))  # type: ignore[union-attr]
        await m2.polled(20, timeout=20)
        await m3.polled(20, timeout=20)
        assert m2.values()["voltage"] == 230.5
        assert m3.values()["voltage"] == 399.25
    # client side: every request ended before the next began
    for i in range(0, len(events) - 1, 2):
        assert events[i][0] == "start" and events[i + 1] == ("end", events[i][1]), events[i : i + 2]
    # bus side: the server saw request, answer, request, answer ... each request a whole frame
    received = [d for sending, d in frames if not sending]
    assert len(received) >= 40
    assert all(len(d) == 8 for d in received)  # FC4 request: unit, fc, addr, count, crc
    assert {d[0] for d in received} == {2, 3}
    kinds = [sending for sending, _ in frames]
    assert all(kinds[i] != kinds[i + 1] for i in range(len(kinds) - 1))


async def test_a_failing_unit_does_not_hold_up_the_other_unit(bus: tuple[str, Any]) -> None:
    port, _frames = bus
    points = [{"name": "voltage", "table": "input", "address": 0, "type": "float32"}]
    conn = {"transport": "rtu", "port": port}
    # unit 9 is not on the bus; the pymodbus server answers it with an exception response
    ghost: dict[str, Any] = {"id": "ghost", "connection": conn, "unit": 9, "poll": 0.05, "points": points}
    live: dict[str, Any] = {"id": "live", "connection": conn, "unit": 2, "poll": 0.05, "points": points}
    async with running_driver(ghost) as g, running_driver(live) as lv:
        await wait_for(lambda: g.driver.health.state == "degraded", what="ghost degraded")
        assert "exception 4" in g.driver.health.reason
        await lv.polled(5)
        assert lv.driver.health.state == "online"
        assert lv.values()["voltage"] == 230.5


async def test_rtu_over_tcp_serial_server_shared_by_two_units() -> None:
    from pymodbus.framer import FramerType

    from tests.modbus.servers import TcpServer, registers_for

    regs1 = registers_for({"holding": [(0, "int32", -5, "ABCD")]})["holding"]
    regs2 = registers_for({"holding": [(0, "int32", 77, "ABCD")]})["holding"]
    srv = await TcpServer({1: {"holding": regs1}, 2: {"holding": regs2}}, framer=FramerType.RTU).start()
    try:
        conn = {"transport": "rtu_over_tcp", "host": "127.0.0.1", "port": srv.port}
        points = [{"name": "v", "address": 0, "type": "int32", "writable": True}]
        d1: dict[str, Any] = {"id": "u1", "connection": conn, "unit": 1, "poll": 0.05, "points": points}
        d2: dict[str, Any] = {"id": "u2", "connection": conn, "unit": 2, "poll": 0.05, "points": points}
        async with running_driver(d1) as u1, running_driver(d2) as u2:
            assert u1.driver.link is u2.driver.link
            await u1.polled(3)
            await u2.polled(3)
            assert u1.values()["v"] == -5 and u2.values()["v"] == 77
            r = await u2.driver.write("v", 123456)
            assert r.ok, r.reason
            assert await srv.get(2, "holding", 0, 2) == codec.encode(123456, "int32")
            assert await srv.get(1, "holding", 0, 2) == codec.encode(-5, "int32")
    finally:
        await srv.stop()
