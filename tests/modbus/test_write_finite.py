"""A Modbus write of NaN, an infinity or a value beyond the register's range is rejected, naming why,
and nothing is sent: the simulator's registers keep their value (no NaN bits as a setpoint, no
OverflowError reported as a failed write)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drivers.modbus import codec
from tests.modbus.harness import running_driver
from tests.modbus.servers import tcp_server
from tests.support.site import running_site
from tests.support.waiting import until

WRITE_CODES = {5, 6, 15, 16}
POINTS = [
    {"name": "limit", "address": 30, "type": "float32", "order": "CDAB", "writable": True},
    {"name": "setpoint", "address": 10, "type": "int16", "scale": 0.1, "writable": True},
    {"name": "total", "address": 40, "type": "float64", "scale": 0.001, "writable": True},
]
LIMIT = codec.encode(42.5, "float32", "CDAB")
SETPOINT = codec.encode(21.5, "int16", scale=0.1)
TOTAL = codec.encode(1000.0, "float64", scale=0.001)


def _tables() -> dict[str, dict[int, Any]]:
    regs = {30 + i: r for i, r in enumerate(LIMIT)}
    regs.update({10: SETPOINT[0]})
    regs.update({40 + i: r for i, r in enumerate(TOTAL)})
    return {"holding": regs}


async def _unchanged(srv: Any) -> None:
    assert await srv.get(1, "holding", 30, 2) == LIMIT
    assert await srv.get(1, "holding", 10, 1) == SETPOINT
    assert await srv.get(1, "holding", 40, 4) == TOTAL
    assert not [pdu for pdu in srv.faults.pdus if pdu[1] in WRITE_CODES]


async def test_driver_rejects_non_finite_and_out_of_range_values() -> None:
    nan, inf = float("nan"), float("inf")
    cases = [
        ("limit", nan, "nan is not a finite number"),
        ("limit", inf, "inf is not a finite number"),
        ("limit", -inf, "-inf is not a finite number"),
        ("limit", 1e39, "1e+39 is out of range for float32 (accepted -3.40282347e+38..3.40282347e+38)"),
        ("limit", 10**40, "out of range for float32"),
        ("setpoint", inf, "inf is not a finite number: int16"),
        ("setpoint", nan, "nan is not a finite number: int16"),
        (
            "setpoint",
            1e300,
            "1e+300 is out of range for int16 (accepted -32768..32767, i.e. -3276.8..3276.7)",
        ),
        (
            "setpoint",
            4000,
            "out of range for int16 (raw 40000, accepted -32768..32767, i.e. -3276.8..3276.7)",
        ),
        ("total", 1e306, "out of range for float64"),
        ("total", -inf, "is not a finite number: float64"),
    ]
    async with tcp_server({1: _tables()}) as srv:
        conn = {"transport": "tcp", "host": "127.0.0.1", "port": srv.port}
        async with running_driver({"connection": conn, "poll": 0.2, "points": POINTS}) as got:
            await got.polled(1)
            for point, value, reason in cases:
                r = await got.driver.write(point, value)
                assert r.status == "rejected" and reason in r.reason, (point, value, r.status, r.reason)
            await _unchanged(srv)
            # a value in range still goes through
            r = await got.driver.write("setpoint", 22.5)
            assert r.ok, r.reason
            assert await srv.get(1, "holding", 10, 1) == [225]


async def test_hub_write_to_a_modbus_point_is_rejected_not_failed(tmp_path: Path) -> None:
    async with tcp_server({1: _tables()}) as srv:
        doc = {
            "devices": [
                {
                    "id": "meter",
                    "driver": "modbus",
                    "connection": {"transport": "tcp", "host": "127.0.0.1", "port": srv.port},
                    "poll": "100ms",
                    "points": POINTS,
                }
            ]
        }
        async with running_site(tmp_path, doc, web=False) as rt:
            await until(lambda: "meter.limit" in rt.hub.latest, what="first reading")
            for point, value, reason in (
                ("meter.limit", "nan", "not a finite number"),
                ("meter.limit", "-Infinity", "not a finite number"),
                ("meter.limit", 1e39, "out of range for float32"),
                ("meter.setpoint", 1e300, "out of range for int16"),
            ):
                r = await rt.hub.write(point, value, source="test")
                assert r.status == "rejected" and reason in r.reason, (point, value, r.status, r.reason)
            await _unchanged(srv)
            assert rt.hub.latest["meter.limit"].value == 42.5
