"""A write that waits for a device's first start, when that device is stopped before its driver
ever started (a reload that changes or removes it during start-up): the write fails at once,
saying why, and is journaled so; it waited its whole timeout and reported a timeout. A real
runtime, its device tasks and its hub."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge.model import CommandStatus, Event
from tests.support.site import running_site
from tests.support.waiting import until

SITE = """
site: {id: write-cancelled-start}
devices:
  - id: pump
    driver: sim
    points:
      - {name: setpoint, type: float, signal: constant, value: 20.0, writable: true}
"""
#: far longer than the test waits for the answer: a write that waits it out fails the test
WRITE_TIMEOUT_S = 600.0


async def test_a_write_waiting_for_a_start_that_never_comes_fails_at_once(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        events: list[Event] = []
        rt.hub.subscribe(lambda recs: events.extend(r for r in recs if isinstance(r, Event)))
        await until(lambda: rt.slots["pump"].driver, what="the sim driver")
        config = rt.slots["pump"].config
        await rt.stop_device("pump")
        # started again (as a reload does for a changed device); its task has not run yet when a
        # write arrives and waits for its first start, and it is stopped before it ever runs
        rt.start_device(config)
        slot = rt.slots["pump"]
        write = asyncio.create_task(
            rt.hub.write("pump.setpoint", 21.0, source="test", timeout=WRITE_TIMEOUT_S)
        )
        await rt.stop_device("pump")
        assert slot.task is not None and slot.task.cancelled() and slot.driver is None
        async with asyncio.timeout(10):
            result = await write
        assert result.status == CommandStatus.FAILED, result
        assert "device was stopped" in result.reason
        await until(lambda: [e for e in events if e.kind == "command"], what="the command event")
        (command,) = [e for e in events if e.kind == "command"]
        assert command.payload["status"] == "failed" and command.payload["point"] == "pump.setpoint"
