"""Writes: bit points sharing a register, and what `verify: true` accepts as the value read back."""

from __future__ import annotations

import asyncio

from tests.modbus.harness import running_driver
from tests.modbus.servers import tcp_server
from tests.support.waiting import until as wait_for


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


async def test_verify_compares_a_float_within_its_own_rounding() -> None:
    from drivers.modbus import codec

    points = [
        {"name": "f32", "address": 0, "type": "float32", "writable": True, "verify": True},
        {"name": "f64", "address": 4, "type": "float64", "writable": True, "verify": True},
        {"name": "sp", "address": 10, "type": "int16", "scale": 0.1, "writable": True, "verify": True},
    ]
    async with tcp_server({1: {"holding": dict.fromkeys(range(12), 0)}}) as srv:
        doc = {"connection": conn(srv.port), "poll": "1h", "points": points}
        async with running_driver(doc) as got:
            await got.polled(1)

            def value_of(name: str) -> object:
                latest = got.latest(name)
                return None if latest is None else latest.value

            r = await got.driver.write("f32", 21.4)  # kept: read back as float32 holds it
            assert r.ok, r.reason
            as_f32 = codec.decode(codec.encode(21.4, "float32"), "float32")
            await wait_for(lambda: value_of("f32") == as_f32, what="the float32 read back")
            assert (await got.driver.write("f64", 21.4)).ok
            await wait_for(lambda: value_of("f64") == 21.4, what="the float64 read back")
            r = await got.driver.write("sp", 21.43)  # a scaled integer keeps its step: 214
            assert r.ok, r.reason
            await wait_for(lambda: value_of("sp") == 21.4, what="the scaled value read back")

            # a device that keeps whole units only (or ignores the write): 21.0 is not 21.4
            await srv.set(1, "holding", 0, codec.encode(21.0, "float32"))
            await srv.set(1, "holding", 4, codec.encode(21.4 + 1e-9, "float64"))
            await srv.set(1, "holding", 10, [213])
            srv.faults.ignore_writes = True
            r = await got.driver.write("f32", 21.4)
            assert r.status == "failed" and r.reason.startswith(
                "read-back gave 21.0, expected 21.399999618"
            ), r.reason
            r = await got.driver.write("f64", 21.4)
            assert r.status == "failed" and r.reason.startswith("read-back gave 21.400000001"), r.reason
            r = await got.driver.write("sp", 21.43)
            assert r.status == "failed" and r.reason == "read-back gave 21.3, expected 21.4 (for 21.43)", (
                r.reason
            )
