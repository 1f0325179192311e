"""The Modbus driver's on-demand `read(point)` (the commissioning test-read) against real pymodbus
servers on loopback: it asks the device now, jumps a slow poll cycle, and fails with clear reasons."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pymodbus.constants import ExcCodes

from drivers.modbus import codec
from edge.driver import DeviceReadError, reads_on_demand
from edge.model import Quality
from tests.modbus.harness import running_driver, slow_device
from tests.modbus.servers import tcp_server
from tests.support.waiting import until as wait_for

HOUR = 3600  # a poll interval that never comes round again during a test


def conn(port: int) -> dict[str, object]:
    return {"transport": "tcp", "host": "127.0.0.1", "port": port}


METER_POINTS = [
    {"name": "voltage", "address": 0x10, "type": "float32", "order": "CDAB", "unit": "V"},
    {"name": "current", "address": 0x20, "type": "int16", "scale": 0.01, "offset": 0.5},
    {"name": "relay", "table": "coil", "address": 3},
]


def meter_tables() -> dict[str, dict[int, Any]]:
    regs = {0x10 + i: r for i, r in enumerate(codec.encode(230.25, "float32", "CDAB"))}
    regs[0x20] = codec.encode(-1.5, "int16", "ABCD", scale=0.01, offset=0.5)[0]
    return {"holding": regs, "coil": {3: False}}


async def test_read_returns_what_the_device_holds_now_not_the_last_poll() -> None:
    async with tcp_server({1: meter_tables()}) as srv:
        doc = {"connection": conn(srv.port), "poll": HOUR, "points": METER_POINTS}
        async with running_driver(doc) as got:
            await got.polled(1)
            assert got.values() == {"voltage": 230.25, "current": -1.5, "relay": False}
            assert reads_on_demand(got.driver)
            # the device changes; the next poll is an hour away
            await srv.set(1, "holding", 0x10, codec.encode(231.5, "float32", "CDAB"))
            await srv.set(1, "holding", 0x20, codec.encode(2.25, "int16", "ABCD", scale=0.01, offset=0.5))
            await srv.set(1, "coil", 3, [True])
            recorded, requests = len(got.records), len(srv.faults.log)

            voltage = await got.driver.read("voltage")
            assert voltage.point == "dev.voltage" and voltage.quality == Quality.GOOD
            assert voltage.value == 231.5 and abs(voltage.ts - time.time()) < 5
            assert (await got.driver.read("current")).value == pytest.approx(2.25)
            assert (await got.driver.read("relay")).value is True
            # one request per read, for just that point's registers/bits
            assert srv.faults.log[requests:] == [(1, 3, 0x10, 2), (1, 3, 0x20, 1), (1, 1, 3, 1)]
            # a look, not data: nothing emitted, the poll's view of the device unchanged
            assert got.driver.cycles == 1 and got.drained() and len(got.records) == recorded
            assert got.driver.last_values["voltage"] == 230.25
            with pytest.raises(LookupError, match="no point 'nope'"):
                await got.driver.read("nope")


async def test_read_waits_only_for_the_request_in_flight_of_a_slow_poll_cycle() -> None:
    # 20 separate requests per cycle (holes larger than max_gap), each held 50 ms by the device;
    # `probe` has its own hourly schedule, so after the first cycle only the on-demand read asks it
    regs = {a * 20: a for a in range(20)}
    regs[500] = 4242
    points: list[dict[str, object]] = [
        {"name": f"p{a}", "address": a * 20, "type": "uint16"} for a in range(20)
    ]
    points.append({"name": "probe", "address": 500, "type": "uint16", "poll": HOUR})
    async with tcp_server({1: {"holding": regs}}) as srv:
        doc = {"connection": conn(srv.port), "poll": 0.05, "max_gap": 0, "timeout": 2.0, "points": points}
        async with running_driver(doc) as got:
            # the hourly `probe` is its own schedule group: its first read can land after cycle 1
            await wait_for(lambda: "probe" in got.values(), what="the first read of probe")
            assert got.values()["probe"] == 4242
            await srv.set(1, "holding", 500, [4343])

            async with slow_device(srv):
                await wait_for(lambda: len(srv.faults.log) > 30, what="the slow cycle under way")
                before = len(srv.faults.log)
                reading = await got.driver.read("probe")
                assert reading.value == 4343
                # at most the request in flight ran before the read (not the rest of the cycle)
                idx = next(i for i, e in enumerate(srv.faults.log) if i >= before and e[2] == 500)
                assert idx - before <= 1, srv.faults.log[before : idx + 1]


async def test_exception_response_names_the_modbus_exception() -> None:
    async with tcp_server({1: meter_tables()}) as srv:
        doc = {"connection": conn(srv.port), "poll": HOUR, "points": METER_POINTS}
        async with running_driver(doc) as got:
            await got.polled(1)
            srv.faults.exception = ExcCodes.DEVICE_BUSY
            with pytest.raises(DeviceReadError) as err:
                await got.driver.read("voltage")
            assert (
                str(err.value) == "dev refused read_holding_registers 16+2: Modbus exception 6: device busy"
            )
            assert not err.value.no_answer


async def test_no_answer_within_the_timeout_is_a_clear_error() -> None:
    async with tcp_server({1: meter_tables()}) as srv:
        doc = {
            "connection": conn(srv.port),
            "poll": HOUR,
            "timeout": 0.3,
            "retries": 0,
            "points": METER_POINTS,
        }
        async with running_driver(doc) as got:
            await got.polled(1)
            srv.faults.stall.set()
            started = time.monotonic()
            with pytest.raises(DeviceReadError) as err:
                await got.driver.read("voltage")
            assert time.monotonic() - started < 3
            assert err.value.no_answer
            assert str(err.value).startswith(
                f"dev did not answer read_holding_registers 16+2: no valid answer from unit 1 at 127.0.0.1:{srv.port}"
            )


async def test_stopped_server_is_a_clear_error_and_a_restarted_one_answers_at_once() -> None:
    async with tcp_server({1: meter_tables()}) as srv:
        port = srv.port
        doc = {"connection": conn(port), "poll": HOUR, "retries": 0, "points": METER_POINTS}
        async with running_driver(doc) as got:
            await got.polled(1)
            await srv.stop()
            with pytest.raises(DeviceReadError) as err:
                await got.driver.read("voltage")
            assert err.value.no_answer and f"127.0.0.1:{port}" in str(err.value), str(err.value)
            # a second try fails the same way (the read does not sit out the reconnect backoff)
            with pytest.raises(DeviceReadError, match=f"cannot connect to 127.0.0.1:{port}"):
                await got.driver.read("voltage")
            async with tcp_server({1: meter_tables()}, port=port):
                assert (await got.driver.read("voltage")).value == 230.25
