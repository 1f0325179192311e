"""A driver's queue drops on a real running gateway: counted per device for the gateway's lifetime
(across driver restarts) in the status and /metrics, journaled as one `driver_dropped` event per
burst, and a driver's failure is never lost, even when its queue is full."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.api.tokens import create_token
from edge.driver import BaseDriver
from edge.model import Event, Reading
from tests.support.site import running_site
from tests.support.waiting import until, until_async
from tests.sync.test_metrics_cli import samples, scrape

SITE = {"devices": [{"id": "m", "driver": "sim", "points": [{"name": "p", "interval": "1h"}]}]}
QUEUE = 1000  # BaseDriver's default queue_batches: a sim driver holds this many batches


def flood(driver: Any, n: int, t0: float) -> None:
    """`n` one-reading batches in one turn of the event loop: the runtime cannot take any of them
    before the last, so all beyond the queue's room are dropped."""
    for i in range(n):
        driver.emit([Reading(t0 + i * 0.001, "m.p", float(i))])


async def events(rt: Any, kind: str) -> list[Event]:
    """The journaled events `kind` of device m, oldest first."""
    return [e for e in reversed(await rt.recent_events("m", 0.0)) if e.kind == kind]


async def journaled(rt: Any, kind: str, count: int) -> list[Event]:
    found: list[Event] = []

    async def enough() -> bool:
        found[:] = await events(rt, kind)
        return len(found) >= count

    await until_async(enough, what=f"{count} {kind} event(s) of device m")
    return found


def dropped_status(rt: Any) -> int:
    return next(d["dropped"] for d in rt.devices_status() if d["id"] == "m")


async def dropped_metric(rt: Any, token: str) -> float:
    key = ("edge_dropped_total", (("reason", "dropped"), ("where", "driver:m")))
    return samples(await scrape(rt.web_port, token)).get(key, 0.0)


async def running_driver(rt: Any, other_than: object = None) -> BaseDriver:
    slot = rt.slots["m"]
    await until(lambda: slot.driver is not None and slot.driver is not other_than, what="a running driver")
    driver = slot.driver
    assert isinstance(driver, BaseDriver)
    await until(driver._queue.empty, what="the runtime took what the driver emitted at its start")
    return driver


async def test_a_burst_of_drops_is_one_journaled_event_and_counted(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        token = create_token(rt.state, "prom", ["read"])
        driver = await running_driver(rt)
        t0 = time.time()
        flood(driver, QUEUE + 500, t0)
        assert driver.dropped == 500
        (event,) = await journaled(rt, "driver_dropped", 1)
        assert event.severity == "warning" and event.source == "m"
        assert event.payload["dropped"] == 500 and event.payload["total"] == 500
        # the dropped ones are the newest of the burst: the queue kept the first QUEUE batches
        assert event.payload["first_ts"] == t0 + QUEUE * 0.001
        assert event.payload["last_ts"] == t0 + (QUEUE + 499) * 0.001
        assert dropped_status(rt) == 500
        assert await dropped_metric(rt, token) == 500

        # a later burst is a second event; the counts add up
        flood(driver, QUEUE + 30, t0 + 10)
        burst = await journaled(rt, "driver_dropped", 2)
        assert burst[1].payload["dropped"] == 30 and burst[1].payload["total"] == 530
        assert dropped_status(rt) == 530
        assert await dropped_metric(rt, token) == 530
        assert len(await events(rt, "driver_dropped")) == 2  # one per burst, not one per batch


async def test_drops_are_kept_and_reported_across_a_driver_restart(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        rt.backoff_initial = 0.05
        token = create_token(rt.state, "prom", ["read"])
        driver = await running_driver(rt)
        flood(driver, QUEUE + 200, time.time())
        await until(lambda: driver._queue.empty(), what="the runtime took what was queued")
        driver.fail(RuntimeError("port vanished"))  # before the burst's quiet time is over
        (restart,) = await journaled(rt, "driver_restart", 1)
        assert restart.payload["dropped"] == 200
        (drop,) = await events(rt, "driver_dropped")  # reported at the restart, before it
        assert drop.payload["dropped"] == 200 and drop.ts <= restart.ts

        second = await running_driver(rt, other_than=driver)
        assert second.dropped == 0  # a new instance...
        assert dropped_status(rt) == 200  # ...but the device's count is the gateway's
        assert await dropped_metric(rt, token) == 200
        flood(second, QUEUE + 7, time.time())
        drops = await journaled(rt, "driver_dropped", 2)
        assert drops[1].payload["dropped"] == 7 and drops[1].payload["total"] == 207
        assert dropped_status(rt) == 207
        assert await dropped_metric(rt, token) == 207


async def test_a_failure_with_a_full_queue_restarts_the_driver(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        rt.backoff_initial = 0.05
        driver = await running_driver(rt)
        received = rt.hub.received
        flood(driver, QUEUE, time.time())  # the queue is full...
        driver.fail(RuntimeError("port vanished"))  # ...when the poll loop fails
        (restart,) = await journaled(rt, "driver_restart", 1)
        assert restart.payload["error"] == "RuntimeError: port vanished"
        assert rt.slots["m"].restarts == 1
        await running_driver(rt, other_than=driver)
        # what was queued before the failure was delivered, nothing was dropped
        assert rt.hub.received >= received + QUEUE
        assert dropped_status(rt) == 0 and not await events(rt, "driver_dropped")
