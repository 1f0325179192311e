"""A request the gateway's Modbus server cannot carry out is answered with an exception naming the
request's own function code (function | 0x80), as the Modbus spec wants: 01 *illegal function*
for a function it does not know, 03 *illegal data value* for a known one with unacceptable fields
(a read of 0 or of more than 125 registers). A client matching answers to requests by function
code, as libmodbus does, would take "function 0x80" for a broken answer."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path
from typing import Any

from edge.model import Reading
from tests.support.site import running_site

SITE: dict[str, Any] = {
    "devices": [
        {
            "id": "dev1",
            "driver": "modbus",
            "enabled": False,  # values are injected by the test; the point ids must exist
            "connection": {"transport": "tcp", "host": "127.0.0.1"},
            "points": [{"name": "level", "address": 0, "type": "uint16"}],
        }
    ],
    "modbus_server": {
        "listen": "127.0.0.1:0",
        "unit": 1,
        "points": [{"point": "dev1.level", "address": 0, "type": "uint16"}],
    },
}

#: request PDU -> the answer PDU the spec wants
CASES = [
    (bytes([0x41]), bytes([0xC1, 0x01])),  # unknown function
    (bytes([0x64, 0, 0]), bytes([0xE4, 0x01])),  # unknown function, with data
    (bytes([0x83, 0, 0, 0, 1]), bytes([0x83, 0x01])),  # an exception code is no request
    (bytes([3, 0, 0, 0, 0]), bytes([0x83, 0x03])),  # read 0 registers
    (bytes([3, 0, 0, 0, 126]), bytes([0x83, 0x03])),  # more than one answer carries
    (bytes([4, 0, 0, 0, 0]), bytes([0x84, 0x03])),
    (bytes([1, 0, 0, 0x07, 0xD1]), bytes([0x81, 0x03])),  # 2001 coils
    (bytes([3, 0, 0, 0, 1]), bytes([3, 2, 0, 42])),  # and the connection still serves
]


def ask_all(port: int) -> list[tuple[int, int, bytes]]:
    """Send every case on one connection, one at a time; (transaction id, unit, answer PDU) each."""
    out: list[tuple[int, int, bytes]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for tid, (pdu, _) in enumerate(CASES, start=0x1234):
            sock.sendall(struct.pack(">HHHB", tid, 0, len(pdu) + 1, 1) + pdu)
            data = b""
            while len(data) < 6 or len(data) < 6 + struct.unpack(">H", data[4:6])[0]:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                data += chunk
            tid_back, _, length, unit = struct.unpack(">HHHB", data[:7])
            out.append((tid_back, unit, data[7 : 6 + length]))
    return out


async def test_exceptions_name_the_request_function_code(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        rt.hub.ingest([Reading(time.time(), "dev1.level", 42)])
        answers = await asyncio.to_thread(ask_all, rt.components["modbus_server"].port)
    assert answers == [(tid, 1, want) for tid, (_, want) in enumerate(CASES, start=0x1234)]
