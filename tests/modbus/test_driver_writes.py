"""Writes: bit points sharing a register, and what `verify: true` accepts as the value read back."""

from __future__ import annotations

import asyncio

from tests.modbus.harness import running_driver
from tests.modbus.servers import tcp_server


def conn(port: int) -> dict[str, object]:
    return {"transport": "tcp", "host": "127.0.0.1", "port": port}


async def test_concurrent_writes_to_bits_of_one_register_keep_both() -> None:
    points = [
        {"name": "flag_a", "address": 10, "type": "bit", "bit": 0, "writable": True},
        {"name": "flag_b", "address": 10, "type": "bit", "bit": 1, "writable": True},
        {"name": "flag_c", "address": 10, "type": "bit", "bit": 15, "writable": True},
    ]
    async with tcp_server({1: {"holding": {10: 0}}}) as srv:
        doc = {"connection": conn(srv.port), "poll": "1h", "points": points}
        async with running_driver(doc) as got:
            await got.polled(1)
            for _ in range(5):
                await srv.set(1, "holding", 10, [0])
                results = await asyncio.gather(*(got.driver.write(str(p["name"]), True) for p in points))
                assert all(r.ok for r in results), results
                assert await srv.get(1, "holding", 10) == [0x8003]
                again = await asyncio.gather(
                    got.driver.write("flag_a", False), got.driver.write("flag_c", False)
                )
                assert all(r.ok for r in again), again
                assert await srv.get(1, "holding", 10) == [0x0002]
