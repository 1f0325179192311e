"""Real pymodbus servers for the Modbus tests: in-process TCP, RTU on a socat pty, garbage answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus import codec
from tests.support.ports import free_port as free_port  # re-exported for the Modbus tests
from tests.support.procs import stop_process as stop_process  # re-exported for the Modbus tests

TABLE_INDEX = {"coil": 0, "discrete": 1, "holding": 2, "input": 3}


def registers_for(values: dict[str, list[tuple[int, str, object, str]]]) -> dict[str, dict[int, int]]:
    """{table: [(address, type, value, order)]} -> {table: {address: register}} via the codec."""
    out: dict[str, dict[int, int]] = {}
    for table, items in values.items():
        regs = out.setdefault(table, {})
        for address, dtype, value, order in items:
            for i, r in enumerate(codec.encode(value, dtype, order, length=len(str(value)))):
                regs[address + i] = r
    return out


def _runs(cells: dict[int, Any]) -> list[tuple[int, list[Any]]]:
    runs: list[tuple[int, list[Any]]] = []
    for a in sorted(cells):
        if runs and runs[-1][0] + len(runs[-1][1]) == a:
            runs[-1][1].append(cells[a])
        else:
            runs.append((a, [cells[a]]))
    return runs


class Faults:
    """Switches a test flips to make the server misbehave."""

    def __init__(self) -> None:
        self.stall = asyncio.Event()  # set: hold every request until cleared
        self.unstall = asyncio.Event()
        self.exception: ExcCodes | None = None
        self.ignore_writes = False  # acknowledge writes but keep the old values (a stubborn device)
        self.log: list[tuple[int, int, int, int]] = []  # (unit, fc, address, count) reaching the data
        self.pdus: list[tuple[int, int, int, int]] = []  # every request PDU received, refused ones too


def sim_device(unit: int, tables: dict[str, dict[int, Any]], faults: Faults) -> SimDevice:
    blocks: list[list[SimData]] = [[], [], [], []]
    for table, cells in tables.items():
        bits = table in ("coil", "discrete")
        for start, values in _runs(cells):
            kind = DataType.BITS if bits else DataType.REGISTERS
            blocks[TABLE_INDEX[table]].append(SimData(start, values=list(values), datatype=kind))
    for i, b in enumerate(blocks):
        if not b:  # pymodbus needs every table; park an unused cell far away
            kind = DataType.BITS if i < 2 else DataType.INVALID
            b.append(SimData(65000, count=1, datatype=kind))

    async def action(
        fc: int, start: int, address: int, count: int, registers: list[int], set_values: Any
    ) -> Any:
        faults.log.append((unit, fc, address, count))
        if faults.stall.is_set():
            await faults.unstall.wait()
        if faults.ignore_writes and set_values:
            if fc in (5, 15):  # bits are packed 16 to a register: keep the stored ones
                return faults.exception
            offset = address - start
            set_values[:] = registers[offset : offset + len(set_values)]
        return faults.exception

    return SimDevice(unit, simdata=tuple(blocks), action=action)  # type: ignore[arg-type]


class TcpServer:
    """An in-process pymodbus TCP server on 127.0.0.1 with one or more unit ids."""

    def __init__(
        self, units: dict[int, dict[str, dict[int, Any]]], port: int = 0, framer: Any = None
    ) -> None:
        self.units = units
        self.faults = Faults()
        self.port = port
        self.framer = framer
        self.server: Any = None

    async def start(self) -> TcpServer:
        from pymodbus.framer import FramerType
        from pymodbus.server import ModbusTcpServer

        devices = [sim_device(u, t, self.faults) for u, t in self.units.items()]

        def trace(sending: bool, pdu: Any) -> Any:
            if not sending:
                self.faults.pdus.append((pdu.dev_id, pdu.function_code, pdu.address, pdu.count))
            return pdu

        self.server = ModbusTcpServer(
            devices,
            address=("127.0.0.1", self.port),
            framer=self.framer or FramerType.SOCKET,
            trace_pdu=trace,
        )
        await self.server.serve_forever(background=True)
        self.port = self.server.transport.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.faults.unstall.set()
            await self.server.shutdown()
            self.server = None

    async def get(self, unit: int, table: str, address: int, count: int = 1) -> list[Any]:
        fc = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}[table]
        return list(await self.server.context.async_getValues(unit, fc, address, count))

    async def set(self, unit: int, table: str, address: int, values: list[Any]) -> None:
        fc = {"coil": 5, "holding": 16}[table]
        await self.server.context.async_setValues(unit, fc, address, values)


@contextlib.asynccontextmanager
async def tcp_server(units: dict[int, dict[str, dict[int, Any]]], port: int = 0) -> AsyncIterator[TcpServer]:
    s = await TcpServer(units, port).start()
    try:
        yield s
    finally:
        await s.stop()


def crc(data: bytes) -> bytes:
    """Modbus RTU's CRC-16 of `data`, as it follows a frame (low byte first)."""
    c = 0xFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return struct.pack("<H", c)


class GarbageServer:
    """A 'device' on 127.0.0.1 that answers each request with `reply(request)` (garbage, short...):
    over Modbus TCP (MBAP-framed requests, the reply sent as it is), or with `rtu` as a serial
    server's far end (RTU over TCP: 8-byte requests, the reply framed with its CRC). A reply of
    None sends nothing (a unit that is not powered). `requests` logs each request."""

    def __init__(self, reply: Callable[[bytes], bytes | None], rtu: bool = False) -> None:
        self.reply = reply
        self.rtu = rtu
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _request(self, reader: asyncio.StreamReader) -> bytes:
        if self.rtu:
            return await reader.readexactly(8)
        head = await reader.readexactly(7)
        return head + await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)

    async def start(self) -> GarbageServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    request = await self._request(reader)
                    self.requests.append(request)
                    answer = self.reply(request)
                    if answer is None:
                        continue
                    writer.write(answer + crc(answer) if self.rtu else answer)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


# ---------------------------------------------------------------- a server in its own process
SERVER_SCRIPT = Path(__file__).with_name("server_process.py")


def start_server_process(port: int, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Run server_process.py serving `spec` on `port`; returns once it accepts connections."""
    import json
    import socket

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    # stderr to a file, not a pipe: an unread pipe fills up and freezes the server mid-test
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), str(port), json.dumps(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server process exited: {log.read().decode()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return proc
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError("server process did not start listening")


def probe_site(port: int, unit: int = 5) -> dict[str, Any]:
    """A site with one Modbus meter (`meter-b9`, a float32 CDAB voltage at holding 0x10) on a test
    server: what the commissioning tests probe."""
    return {
        "devices": [
            {
                "id": "meter-b9",
                "driver": "modbus",
                "connection": {"transport": "tcp", "host": "127.0.0.1", "port": port},
                "unit": unit,
                "poll": "1s",
                "points": [
                    {
                        "name": "voltage",
                        "table": "holding",
                        "address": 0x10,
                        "type": "float32",
                        "order": "CDAB",
                        "unit": "V",
                    }
                ],
            }
        ]
    }
