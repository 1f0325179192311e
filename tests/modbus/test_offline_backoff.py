"""Units that stop answering on a shared bus do not take it from the units that answer: a silent
unit is asked again only after a backoff (one request, no retry, doubling up to `reconnect_max`),
and a retry queues behind the requests that waited meanwhile instead of holding the bus."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from edge.model import HealthState
from tests.modbus.harness import running_driver
from tests.modbus.servers import GarbageServer
from tests.support.waiting import until as wait_for


def meter_bus(request: bytes) -> bytes | None:
    """Unit 1 answers every FC3 read with registers holding 7; every other unit is unpowered."""
    if request[0] != 1:
        return None
    count = int.from_bytes(request[4:6], "big")
    return bytes([1, 3, 2 * count]) + b"\x00\x07" * count


@contextlib.asynccontextmanager
async def serial_server() -> AsyncIterator[GarbageServer]:
    srv = await GarbageServer(meter_bus, rtu=True).start()
    try:
        yield srv
    finally:
        await srv.stop()


def unit_doc(port: int, unit: int, **keys: Any) -> dict[str, Any]:
    return {
        "id": f"unit{unit}",
        "connection": {"transport": "rtu_over_tcp", "host": "127.0.0.1", "port": port},
        "unit": unit,
        "points": [{"name": "v", "address": 0, "type": "uint16"}],
        **keys,
    }


async def test_a_retry_lets_the_waiting_requests_of_other_units_go_first() -> None:
    async with serial_server() as srv:
        gate = unit_doc(srv.port, 1, poll=0.01, timeout=1.0)
        meter = unit_doc(srv.port, 2, poll=0.05, timeout=0.1, retries=2)
        starts: list[int] = []
        async with running_driver(gate) as g, running_driver(meter) as m:
            link = g.driver.link
            assert link is not None and link is m.driver.link
            link.trace = lambda event, unit: starts.append(unit) if event == "start" else None
            await wait_for(lambda: m.driver.health.state == HealthState.OFFLINE, what="meter offline")
            await wait_for(lambda: starts.count(2) >= 3, what="the first poll's three tries")
            await g.polled(g.driver.cycles + 3)
            assert g.driver.health.state == HealthState.ONLINE and g.values() == {"v": 7}
        # the gate polls all the time, so it waits whenever the meter's try ends: it goes next
        tries = [i for i, unit in enumerate(starts) if unit == 2]
        back_to_back = [i for i in tries if i + 1 < len(starts) and starts[i + 1] == 2]
        assert not back_to_back, starts


async def test_a_silent_unit_on_a_shared_bus_backs_off() -> None:
    async with serial_server() as srv:
        gate = unit_doc(srv.port, 1, poll=0.02, timeout=1.0)
        # shortest poll 0.05 s: backoff 0.1 s, 0.2 s, 0.4 s, then 0.4 s (reconnect_max)
        meter = unit_doc(srv.port, 2, poll=0.05, timeout=0.05, retries=1, reconnect_max=0.4)
        async with running_driver(gate) as g, running_driver(meter) as m:
            failed: list[int] = []  # requests the meter was sent when each poll of it failed
            went_silent = m.driver._went_silent

            def counting(*args: Any, **kwargs: Any) -> None:
                failed.append([r[0] for r in srv.requests].count(2))
                went_silent(*args, **kwargs)

            m.driver._went_silent = counting  # type: ignore[method-assign]
            await wait_for(lambda: len(failed) >= 5, timeout=20, what="five failed polls of the meter")
            await g.polled(g.driver.cycles + 3)

            reason = m.driver.health.reason
            assert m.driver.health.state == HealthState.OFFLINE
            assert "no valid answer from unit 2" in reason and "next try at" in reason, reason
            assert m.driver._silent_backoff == 0.4  # doubled up to reconnect_max
            assert m.driver.counters.get("polls_skipped_silent", 0) > 0
            # the first poll tried twice (retries: 1); every later one, a probe, asked once
            sent = [b - a for a, b in zip([0, *failed], failed, strict=False)]
            assert sent[0] == 2 and set(sent[1:]) == {1}, sent
            assert g.driver.health.state == HealthState.ONLINE and g.driver.health.errors == 0
