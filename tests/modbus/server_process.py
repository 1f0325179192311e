"""A pymodbus TCP server in its own process: `server_process.py PORT SPEC_JSON`.

SPEC_JSON: {"UNIT": {"TABLE": {"ADDRESS": value, ...}}} — the tests kill it (SIGKILL, by pid) to
simulate a device that dies, and start it again on the same port to watch the driver recover.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tests.modbus.servers import TcpServer


async def main() -> None:
    port = int(sys.argv[1])
    spec = json.loads(sys.argv[2])
    units = {
        int(u): {t: {int(a): v for a, v in cells.items()} for t, cells in tables.items()}
        for u, tables in spec.items()
    }
    server = await TcpServer(units, port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
