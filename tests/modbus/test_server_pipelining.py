"""Modbus TCP lets a client keep several requests in flight on one connection, each with its own
transaction id: the gateway's server answers every one of them, once, in order — whether they
arrive in one TCP segment, one segment each while earlier ones are being answered, more than the
server queues at once, or with a request split across segments."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path
from typing import Any

from drivers.modbus.server import MAX_IN_FLIGHT
from edge.model import Reading
from tests.support.site import running_site

SITE: dict[str, Any] = {
    "devices": [
        {
            "id": "dev1",
            "driver": "modbus",
            "enabled": False,  # values are injected by the test; the point ids must exist
            "connection": {"transport": "tcp", "host": "127.0.0.1"},
            "points": [{"name": f"r{i}", "address": i, "type": "uint16"} for i in range(4)],
        }
    ],
    "modbus_server": {
        "listen": "127.0.0.1:0",
        "unit": 1,
        "points": [{"point": f"dev1.r{i}", "address": i, "type": "uint16"} for i in range(4)],
    },
}


def read_request(tid: int, address: int) -> bytes:
    """FC3, one holding register at `address`, unit 1."""
    return struct.pack(">HHHB", tid, 0, 6, 1) + struct.pack(">BHH", 3, address, 1)


class Client:
    """A blocking Modbus TCP client that writes raw bytes and reads whole answers (run in a thread:
    the server answers from the test's event loop meanwhile)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def answers_until(self, last: int) -> list[tuple[int, bytes]]:
        """Every answer up to the one with transaction id `last`, as (transaction id, PDU). Answers
        come in order, so one given twice or left out shows before it; the socket's timeout ends
        the wait when it never comes."""
        out: list[tuple[int, bytes]] = []
        while not out or out[-1][0] != last:
            if len(self.buffer) >= 6 and len(self.buffer) >= 6 + struct.unpack(">H", self.buffer[4:6])[0]:
                tid, _, length = struct.unpack(">HHH", self.buffer[:6])
                out.append((tid, self.buffer[7 : 6 + length]))
                self.buffer = self.buffer[6 + length :]
                continue
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            self.buffer += data
        return out

    def close(self) -> None:
        self.sock.close()


def holding(value: int) -> bytes:
    return bytes([3, 2]) + struct.pack(">H", value)


def one_write(port: int, n: int) -> list[tuple[int, bytes]]:
    client = Client(port)
    try:
        client.sock.sendall(b"".join(read_request(100 + i, i % 4) for i in range(n)))
        return client.answers_until(100 + n - 1)
    finally:
        client.close()


def one_write_each(port: int, n: int) -> list[tuple[int, bytes]]:
    client = Client(port)
    try:
        for i in range(n):  # without waiting for answers: a SCADA with requests in flight
            client.sock.send(read_request(100 + i, i % 4))
        return client.answers_until(100 + n - 1)
    finally:
        client.close()


def split_across_writes(port: int) -> list[tuple[int, bytes]]:
    client = Client(port)
    try:
        second = read_request(201, 1)
        client.sock.sendall(read_request(200, 0) + second[:5])
        got = client.answers_until(200)  # the first is answered while half the second waits
        client.sock.sendall(second[5:] + read_request(202, 2))
        return got + client.answers_until(202)
    finally:
        client.close()


async def test_every_pipelined_request_is_answered_once_in_order(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        rt.hub.ingest([Reading(time.time(), f"dev1.r{i}", 10 + i) for i in range(4)])
        port = rt.components["modbus_server"].port

        def expected(n: int, first: int = 100) -> list[tuple[int, bytes]]:
            return [(first + i, holding(10 + i % 4)) for i in range(n)]

        assert await asyncio.to_thread(one_write, port, 3) == expected(3)
        assert await asyncio.to_thread(one_write_each, port, 10) == expected(10)
        # more than the server queues, in one write larger than pymodbus' own receive buffer
        many = 4 * MAX_IN_FLIGHT
        assert len(b"".join(read_request(0, 0) for _ in range(many))) > 264
        assert await asyncio.to_thread(one_write, port, many) == expected(many)
        assert await asyncio.to_thread(split_across_writes, port) == [
            (200, holding(10)),
            (201, holding(11)),
            (202, holding(12)),
        ]
