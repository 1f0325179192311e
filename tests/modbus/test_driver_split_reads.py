"""A merged read the device refuses ("illegal data address") is split and re-read in the same
cycle: every point still gives exactly one reading per cycle."""

from __future__ import annotations

from collections import Counter

from edge.model import HealthState, Reading
from tests.modbus.harness import running_driver
from tests.modbus.servers import tcp_server


async def test_a_split_read_reads_each_point_once_in_its_cycle() -> None:
    # only registers 0, 100, 200 and 201 exist: any read spanning a hole is refused. The plan
    # [0], [100..201] is refused and cut at 200; the group's new plan [0..100], [200..201] would
    # take 0 (read already) along with 100, be refused again, and read 0 a second time.
    addresses = (0, 100, 200, 201)
    points = [{"name": f"r{a}", "address": a, "type": "uint16"} for a in addresses]
    async with tcp_server({1: {"holding": {a: a + 1 for a in addresses}}}) as srv:
        doc = {
            "connection": {"transport": "tcp", "host": "127.0.0.1", "port": srv.port},
            "poll": "1h",
            "points": points,
        }
        async with running_driver(doc) as got:
            await got.polled(1)
            for cycle in range(3):
                if cycle:
                    got.records.clear()
                    await got.driver.poll_group(3600.0)
                    await got.polled(cycle + 1)
                readings = Counter(r.point for r in got.records if isinstance(r, Reading))
                assert readings == {f"dev.r{a}": 1 for a in addresses}, cycle
                assert got.values() == {f"r{a}": a + 1 for a in addresses}
                assert got.driver.health.state == HealthState.ONLINE
            # the cut learnt by then reads without a refusal
            assert [(r.start, r.count) for r in got.driver.plan_for(3600.0)] == [(0, 1), (100, 1), (200, 2)]
            before = len(srv.faults.pdus)
            await got.driver.poll_group(3600.0)
            assert srv.faults.pdus[before:] == [(1, 3, 0, 1), (1, 3, 100, 1), (1, 3, 200, 2)]
