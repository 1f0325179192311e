"""The driver against real pymodbus servers on 127.0.0.1: decoding, profiles, writes, splitting."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

import pytest

from drivers.modbus import codec
from edge.model import HealthState, Quality
from tests.modbus.harness import running_driver
from tests.modbus.servers import free_port, registers_for, tcp_server
from tests.support.waiting import until as wait_for

TYPE_VALUES = [
    ("int16", -1234),
    ("uint16", 54321),
    ("int32", -123456789),
    ("uint32", 3_000_000_000),
    ("int64", -(2**60) - 7),
    ("uint64", 2**63 + 11),
    ("float32", 230.5),
    ("float64", 49.987654321),
]


def conn(port: int) -> dict[str, object]:
    return {"transport": "tcp", "host": "127.0.0.1", "port": port}


async def test_every_type_and_word_order_decodes() -> None:
    items, points = [], []
    address = 0
    for order in codec.ORDERS:
        for dtype, value in TYPE_VALUES:
            name = f"{dtype}_{order.lower()}"
            items.append((address, dtype, value, order))
            points.append({"name": name, "address": address, "type": dtype, "order": order})
            address += codec.register_count(dtype) + 1  # a one-register hole between values
    items.append((address, "string", "SN12345", "BADC"))
    points.append({"name": "serial", "address": address, "type": "string", "length": 7, "order": "BADC"})
    regs = {a: 0 for a in range(address + 4)}  # holes exist (read as 0), so merging is allowed
    regs.update(registers_for({"holding": items})["holding"])
    async with tcp_server({1: {"holding": regs}}) as srv:
        async with running_driver({"connection": conn(srv.port), "poll": 0.2, "points": points}) as got:
            await got.polled(1)
            values = got.values()
    for order in codec.ORDERS:
        for dtype, value in TYPE_VALUES:
            assert values[f"{dtype}_{order.lower()}"] == value, (dtype, order)
    assert values["serial"] == "SN12345"
    # 33 points (116 registers with the holes) are read in one request, not 33
    assert got.driver.requests_last_cycle == 1


DTSU_RAW = {  # what a DTSU666 sends (scaled raw counts) -> engineering values after the profile's scale
    0x2006: (2301.0, 230.1),
    0x2008: (2295.0, 229.5),
    0x200A: (2310.0, 231.0),
    0x200C: (5120.0, 5.12),
    0x2012: (35400.0, 3540.0),
    0x202A: (987.0, 0.987),
    0x2044: (5001.0, 50.01),
    0x401E: (12345.5, 12345.5),
    0x4028: (12.25, 12.25),
}
DTSU_NAMES = {
    0x2006: "voltage_a",
    0x2008: "voltage_b",
    0x200A: "voltage_c",
    0x200C: "current_a",
    0x2012: "active_power",
    0x202A: "power_factor",
    0x2044: "frequency",
    0x401E: "energy_import",
    0x4028: "energy_export",
}


def _filled(items: Sequence[tuple[int, str, object, str]], spans: list[tuple[int, int]]) -> dict[int, int]:
    regs = {a: 0 for start, end in spans for a in range(start, end)}
    regs.update(registers_for({"input": list(items)})["input"])
    return regs


async def test_profile_chint_dtsu666_engineering_values() -> None:
    items = [(a, "float32", raw, "ABCD") for a, (raw, _) in DTSU_RAW.items()]
    regs = _filled(items, [(0x2000, 0x2050), (0x4000, 0x4040)])
    async with tcp_server({7: {"input": regs}}) as srv:
        doc = {"profile": "chint-dtsu666", "connection": conn(srv.port), "unit": 7, "poll": 0.2}
        from edge.config import load_profile, merge_profile

        profile, _ = load_profile("chint-dtsu666")
        async with running_driver(merge_profile(profile, doc | {"id": "meter-b1"})) as got:
            await got.polled(1)
            values = got.values()
            assert got.driver.health.state == HealthState.ONLINE
            # the 16- and 24-register holes of its map are read rather than cost two more requests
            assert got.driver.requests_last_cycle == 2
            reads = {(a, n) for _u, fc, a, n in srv.faults.pdus if fc == 4}
            assert reads == {(0x2006, 64), (0x401E, 12)}
    for address, (_raw, expected) in DTSU_RAW.items():
        assert values[DTSU_NAMES[address]] == pytest.approx(expected, rel=1e-6), DTSU_NAMES[address]


async def test_dtsu666_that_refuses_reads_across_its_holes_converges() -> None:
    # only the profile's own registers exist: every read spanning a hole is "illegal data address"
    items = [(a, "float32", raw, "ABCD") for a, (raw, _) in DTSU_RAW.items()]
    from edge.config import load_profile, merge_profile

    profile, _ = load_profile("chint-dtsu666")
    mapped = [int(p["address"]) for p in profile["points"]]
    regs = _filled(items, [(a, a + 2) for a in mapped])
    async with tcp_server({7: {"input": regs}}) as srv:
        doc = {"profile": "chint-dtsu666", "connection": conn(srv.port), "unit": 7, "poll": 0.05}
        async with running_driver(merge_profile(profile, doc | {"id": "meter-b1"})) as got:
            await got.polled(4)
            values = got.values()
            assert got.driver.health.state == HealthState.ONLINE, got.driver.health.reason
            assert not [r for r in got.records if getattr(r, "quality", 0) != Quality.GOOD]
            # each refused merged read was tried once; every later cycle uses the remembered cut
            reads = [(a, n) for _u, fc, a, n in srv.faults.pdus if fc == 4]
            assert reads.count((0x2006, 64)) == 1 and reads.count((0x401E, 12)) == 1
            assert got.driver.requests_last_cycle == 5
            plan = [(r.start, r.count) for r in got.driver.plan_for(0.05)]
            assert plan == [(0x2006, 20), (0x202A, 2), (0x2044, 2), (0x401E, 2), (0x4028, 2)]
    for address, (_raw, expected) in DTSU_RAW.items():
        assert values[DTSU_NAMES[address]] == pytest.approx(expected, rel=1e-6), DTSU_NAMES[address]


@pytest.mark.parametrize(
    ("profile", "values"),
    [
        ("eastron-sdm120", {0x0000: 229.8, 0x0006: 1.25, 0x000C: 287.0, 0x0046: 50.0, 0x0156: 4321.5}),
        ("eastron-sdm630", {0x0000: 231.0, 0x0004: 229.0, 0x0034: 6900.0, 0x004A: 17.5}),
        ("chint-ddsu666", {0x2000: 228.4, 0x2004: 1.234, 0x200E: 49.98, 0x400A: 3.5}),
    ],
)
async def test_meter_profiles(profile: str, values: dict[int, float]) -> None:
    from edge.config import load_profile, merge_profile

    prof, _ = load_profile(profile)
    by_address = {int(p["address"]): p["name"] for p in prof["points"]}
    items = [(a, "float32", v, "ABCD") for a, v in values.items()]
    regs = _filled(items, [(0, 0x160), (0x2000, 0x2020), (0x4000, 0x4010)])
    async with tcp_server({1: {"input": regs}}) as srv:
        doc = merge_profile(prof, {"id": "m", "connection": conn(srv.port), "poll": 0.2})
        async with running_driver(doc) as got:
            await got.polled(1)
            got_values = got.values()
    for address, v in values.items():
        assert got_values[by_address[address]] == pytest.approx(v, rel=1e-6)


async def test_writes_land_in_the_server_and_are_verified() -> None:
    from edge.config import load_profile, merge_profile

    prof, _ = load_profile("parking-barrier")
    tables = {
        "coil": {0: False, 1: False},
        "discrete": {0: True, 1: False, 2: True},
        "holding": {0: 0, 1: 0, 2: 7, 10: 0, 11: 0, 20: 0b1010, 30: 0, 31: 0},
    }
    points = [
        {"name": "setpoint", "address": 10, "type": "int16", "scale": 0.1, "writable": True, "verify": True},
        {"name": "relay_2", "address": 20, "type": "bit", "bit": 2, "writable": True},
        {"name": "limit", "address": 30, "type": "float32", "order": "CDAB", "writable": True},
    ]
    async with tcp_server({1: tables}) as srv:
        doc = merge_profile(prof, {"id": "gate", "connection": conn(srv.port), "poll": 0.2, "points": points})
        async with running_driver(doc) as got:
            await got.polled(1)
            assert got.values()["loop_occupied"] is True and got.values()["barrier_closed"] is True
            r = await got.driver.write("open_cmd", True)  # FC5
            assert r.ok, r.reason
            assert (await srv.get(1, "coil", 0, 1))[0] is True
            r = await got.driver.write("setpoint", -12.5)  # FC6, scaled, read back
            assert r.ok, r.reason
            assert await srv.get(1, "holding", 10, 1) == [0x10000 - 125]
            r = await got.driver.write("relay_2", True)  # read-modify-write keeps the other bits
            assert r.ok, r.reason
            assert await srv.get(1, "holding", 20, 1) == [0b1110]
            r = await got.driver.write("limit", 42.5)  # FC16 in CDAB
            assert r.ok, r.reason
            assert await srv.get(1, "holding", 30, 2) == codec.encode(42.5, "float32", "CDAB")
            r = await got.driver.write("setpoint", 99999)
            assert r.status == "rejected" and "out of range for int16" in r.reason
            r = await got.driver.write("fault_code", 1)
            assert r.status == "rejected" and "not writable" in r.reason
            # the written value is reported at once
            await wait_for(lambda: got.latest("setpoint").value == -12.5, what="the written value")


async def test_refused_write_is_a_failed_command() -> None:
    from pymodbus.constants import ExcCodes

    async with tcp_server({1: {"holding": {0: 5}}}) as srv:
        points = [{"name": "sp", "address": 0, "type": "uint16", "writable": True, "verify": True}]
        async with running_driver({"connection": conn(srv.port), "poll": 0.2, "points": points}) as got:
            await got.polled(1)
            srv.faults.exception = ExcCodes.ILLEGAL_VALUE
            r = await got.driver.write("sp", 9)
            assert r.status == "failed" and "illegal data value" in r.reason
            srv.faults.exception = None
            assert await srv.get(1, "holding", 0, 1) == [5]


async def test_illegal_address_splits_the_request_and_remembers() -> None:
    # registers 0-1 and 5-6 exist; 2-4 do not: the merged read 0..6 is refused
    regs = {0: 1, 1: 2, 5: 3, 6: 4}
    points = [
        {"name": "a", "address": 0, "type": "uint16"},
        {"name": "b", "address": 1, "type": "uint16"},
        {"name": "c", "address": 5, "type": "uint32"},
    ]
    async with tcp_server({1: {"holding": regs}}) as srv:
        async with running_driver({"connection": conn(srv.port), "poll": 0.1, "points": points}) as got:
            await got.polled(2)
            assert got.values() == {"a": 1, "b": 2, "c": 3 * 65536 + 4}
            assert got.driver.health.state == HealthState.ONLINE
            plan = got.driver.plan_for(0.1)
            assert [(r.start, r.count) for r in plan] == [(0, 2), (5, 2)]
            # the refused merged read happened once; later cycles use the remembered split
            merged = [e for e in srv.faults.pdus if e[2] == 0 and e[3] == 7]
            assert len(merged) == 1


async def test_exception_response_marks_points_bad_and_degrades() -> None:
    from pymodbus.constants import ExcCodes

    async with tcp_server({1: {"holding": {0: 1, 1: 2}}}) as srv:
        points = [{"name": "a", "address": 0, "type": "uint16"}]
        async with running_driver({"connection": conn(srv.port), "poll": 0.1, "points": points}) as got:
            await got.polled(1)
            srv.faults.exception = ExcCodes.DEVICE_BUSY
            await wait_for(lambda: got.driver.health.state == HealthState.DEGRADED, what="degraded")
            assert "device busy" in got.driver.health.reason
            await wait_for(lambda: got.latest("a").quality == Quality.BAD, what="a bad reading")
            assert got.latest("a").value is None
            srv.faults.exception = None
            await wait_for(lambda: got.latest("a").quality == Quality.GOOD, what="a good reading again")
            assert got.latest("a").value == 1
            assert got.driver.health.state == HealthState.ONLINE


async def test_verify_catches_a_device_that_ignores_the_write() -> None:
    async with tcp_server({1: {"holding": {0: 5}}}) as srv:
        points = [{"name": "sp", "address": 0, "type": "uint16", "writable": True, "verify": True}]
        async with running_driver({"connection": conn(srv.port), "poll": 0.2, "points": points}) as got:
            await got.polled(1)
            srv.faults.ignore_writes = True
            r = await got.driver.write("sp", 9)
            assert r.status == "failed" and r.reason == "read-back gave 5, expected 9"
            assert await srv.get(1, "holding", 0, 1) == [5]


async def test_per_point_poll_intervals_are_grouped() -> None:
    async with tcp_server({1: {"holding": {0: 1, 100: 2}}}) as srv:
        points = [
            {"name": "fast", "address": 0, "type": "uint16"},
            {"name": "slow", "address": 100, "type": "uint16", "poll": "1h"},
        ]
        async with running_driver({"connection": conn(srv.port), "poll": 0.05, "points": points}) as got:
            await got.polled(6)
            reads = [e[2] for e in srv.faults.log if e[1] == 3]
            assert reads.count(100) == 1 and reads.count(0) >= 5
            assert got.values() == {"fast": 1, "slow": 2}


async def test_shared_bus_link_is_reference_counted() -> None:
    from drivers.modbus import transport
    from drivers.modbus.config import Connection

    c = Connection.model_validate({"transport": "rtu_over_tcp", "host": "127.0.0.1", "port": 1})
    a, b = transport.acquire(c), transport.acquire(c)
    assert a is b and a.users == 2
    transport.release(a)
    assert transport.acquire(c) is a
    transport.release(a)
    transport.release(a)
    assert c.bus_key() not in transport._links
    tcp = Connection.model_validate({"transport": "tcp", "host": "127.0.0.1", "port": 1})
    assert transport.acquire(tcp) is not transport.acquire(tcp)  # TCP devices poll concurrently


async def test_reconnect_backoff_is_capped_with_jitter() -> None:
    from drivers.modbus.config import Connection
    from drivers.modbus.transport import Link, LinkError

    port = free_port()  # nothing listens here
    link = Link(
        Connection.model_validate({"host": "127.0.0.1", "port": port}), timeout=0.5, reconnect_max=2.0
    )
    # the backoff chosen during a call lies between the deadline seen from after the call (a lower
    # estimate) and from before it (an upper one), however long the call took on a busy machine
    at_most, at_least = [], []
    for _ in range(12):
        link._next_attempt = 0.0  # pretend the wait is over (hours of failure in a few ms)
        before = time.monotonic()
        with pytest.raises(LinkError, match="cannot connect"):
            await link.call(1, "read_holding_registers", 0, count=1)
        after = time.monotonic()
        at_least.append(link._next_attempt - after)
        at_most.append(link._next_attempt - before)
        # between attempts it fails fast without touching the network
        with pytest.raises(LinkError, match="next attempt in"):
            await link.call(1, "read_holding_registers", 0, count=1)
    assert at_least[0] < 1.0  # starts small
    assert all(d <= 2.0 * 1.2 for d in at_least) and all(d >= 1.5 for d in at_most[-5:])  # capped
    assert link.connects == 0 and len({round(d, 4) for d in at_least[-5:]}) > 1  # jittered


@pytest.mark.parametrize("orders", [("CDAB",), codec.ORDERS], ids=["one-order", "mixed"])
async def test_polled_values_are_what_codec_decode_gives(orders: tuple[str, ...]) -> None:
    # random maps (every numeric type, scale and offset, NaN and infinite floats; bits and strings
    # with mixed orders) against codec.decode of the registers the server holds: however the driver
    # decodes a whole answer, each value is the one decode gives point by point, good, except NaN
    # and infinities: bad, with no value
    rng = random.Random(len(orders))
    nan32, inf32 = [0x7FC0, 0], [0x7F80, 0]
    regs: dict[int, int] = {}
    points: list[dict[str, Any]] = []
    address = 0
    for i in range(150):
        order = rng.choice(orders)
        dtype = rng.choice([*codec.NUMERIC_TYPES, *(["string", "bit"] if len(orders) > 1 else [])])
        point: dict[str, Any] = {"name": f"p{i}", "address": address, "type": dtype, "order": order}
        if dtype == "string":
            point["length"] = 6
        if dtype == "bit":
            point["bit"] = rng.randrange(16)
        elif dtype != "string":
            point["scale"], point["offset"] = rng.choice([(1.0, 0.0), (0.1, 0.0), (1.0, -40.0), (0.001, 5.0)])
        n = codec.register_count(dtype, point.get("length"))
        words = [rng.randrange(65536) for _ in range(n)]
        if dtype == "string":
            words = codec.encode("".join(rng.choice("AB12 ") for _ in range(6)), "string", order, length=6)
        elif dtype == "float32" and rng.random() < 0.3:
            words = codec.encode(codec.decode_raw(rng.choice([nan32, inf32]), "float32"), "float32", order)
        regs.update({address + k: w for k, w in enumerate(words)})
        points.append(point)
        address += n + rng.choice([0, 0, 1, 3])
    regs.update({a: 0 for a in range(address) if a not in regs})
    async with tcp_server({1: {"holding": regs}}) as srv:
        async with running_driver({"connection": conn(srv.port), "poll": 0.2, "points": points}) as got:
            await got.polled(1)
    for p in points:
        n = codec.register_count(p["type"], p.get("length"))
        want = codec.decode(
            [regs[p["address"] + k] for k in range(n)],
            p["type"],
            p["order"],
            scale=p.get("scale", 1.0),
            offset=p.get("offset", 0.0),
            bit=p.get("bit"),
        )
        reading = got.latest(p["name"])
        assert reading is not None, p
        if isinstance(want, float) and not math.isfinite(want):  # NaN: no value; ±inf: out of range
            assert (reading.value, reading.quality) == (None, Quality.BAD), p
        else:
            assert (reading.value, reading.quality) == (want, Quality.GOOD), p
            assert type(reading.value) is type(want), p
