"""A split learnt from "illegal data address" is not for good: the merged read is tried again after
a number of poll cycles (backing off while the device keeps refusing), and a refusal of a
contiguous run is taken as proof only when it repeats. A meter that refused everything for a few
seconds while it booted was read one point per request until a restart."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from pymodbus.constants import ExcCodes

from drivers.modbus.planner import SPLIT_RETRY_FIRST
from edge.model import HealthState, Quality, Reading
from tests.modbus.harness import Collected, running_driver
from tests.modbus.servers import TcpServer, tcp_server

HOUR = 3600.0


def doc(port: int, addresses: tuple[int, ...]) -> dict[str, Any]:
    return {
        "connection": {"transport": "tcp", "host": "127.0.0.1", "port": port},
        "poll": "1h",  # the test runs each cycle itself
        "points": [{"name": f"r{a}", "address": a, "type": "uint16"} for a in addresses],
    }


def cut(got: Collected) -> list[tuple[int, int]]:
    return [(r.start, r.count) for r in got.driver.plan_for(HOUR)]


async def cycle(got: Collected, srv: TcpServer) -> list[tuple[int, int, int, int]]:
    """Run one poll cycle; the requests the device received in it."""
    before = len(srv.faults.pdus)
    await got.driver.poll_group(HOUR)
    return srv.faults.pdus[before:]


async def test_a_spell_of_refusals_is_forgotten_after_some_cycles() -> None:
    addresses = (0, 1, 2, 10)
    async with tcp_server({1: {"holding": {a: a + 1 for a in range(11)}}}) as srv:
        async with running_driver(doc(srv.port, addresses)) as got:
            await got.polled(1)
            assert cut(got) == [(0, 11)]
            srv.faults.exception = ExcCodes.ILLEGAL_ADDRESS  # the meter reboots
            await cycle(got, srv)
            await cycle(got, srv)
            srv.faults.exception = None
            assert cut(got) == [(0, 1), (1, 1), (2, 1), (10, 1)]  # refused twice: split

            for _ in range(SPLIT_RETRY_FIRST + 2):
                sent = await cycle(got, srv)
                if cut(got) == [(0, 11)]:
                    break
            assert cut(got) == [(0, 11)], "the merged read was never tried again"
            assert await cycle(got, srv) == [(1, 3, 0, 11)]
            assert sent  # the cycle that merged again read every point
            assert got.driver.health.state == HealthState.ONLINE
            assert got.values() == {f"r{a}": a + 1 for a in addresses}


async def test_one_refusal_of_a_contiguous_run_does_not_split_it() -> None:
    addresses = (0, 1, 2)
    async with tcp_server({1: {"holding": {a: a + 1 for a in addresses}}}) as srv:
        async with running_driver(doc(srv.port, addresses)) as got:
            await got.polled(1)
            srv.faults.exception = ExcCodes.ILLEGAL_ADDRESS
            await cycle(got, srv)
            assert got.driver.health.state == HealthState.DEGRADED
            srv.faults.exception = None
            assert cut(got) == [(0, 3)]
            assert await cycle(got, srv) == [(1, 3, 0, 3)]
            assert got.driver.health.state == HealthState.ONLINE


async def test_a_device_that_keeps_refusing_is_asked_less_and_less_often() -> None:
    # only registers 0 and 10 exist: a read across the hole is always refused
    async with tcp_server({1: {"holding": {0: 1, 10: 11}}}) as srv:
        async with running_driver(doc(srv.port, (0, 10))) as got:
            await got.polled(1)
            merged = [0]  # cycles whose requests included the merged read (the first did)
            for n in range(1, 8 * SPLIT_RETRY_FIRST):
                got.records.clear()
                sent = await cycle(got, srv)
                if (1, 3, 0, 11) in sent:
                    merged.append(n)
                await got.polled(n + 1)  # its readings collected
                # every cycle still reads every point once, refused merged read or not
                readings = Counter(r.point for r in got.records if isinstance(r, Reading))
                assert readings == {"dev.r0": 1, "dev.r10": 1}, n
                assert {r.quality for r in got.records if isinstance(r, Reading)} == {Quality.GOOD}
            gaps = [b - a for a, b in itertools.pairwise(merged)]
            assert gaps == [SPLIT_RETRY_FIRST, 2 * SPLIT_RETRY_FIRST, 4 * SPLIT_RETRY_FIRST], merged
