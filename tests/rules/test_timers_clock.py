"""Rule timers against lost time and steps of the wall clock, the engine driven with explicit clocks.

- `notify: repeat` runs at most one repeat it missed (the gateway stopped, the clock stepped
  forward), not every one of them at once, stamped with the time it runs; a replay, which cannot
  tell a stop from time passing, runs each at its own deadline.
- A step of the wall clock (NTP, a hand set) moves neither a `for:` duration, nor a repeat's
  `every`, nor a `no_data` period: the rules component measures the step against the monotonic
  clock and moves those timers with it. Driven by a wall and a monotonic clock the test sets, in
  a running gateway.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.model import Reading
from edge.runtime import Runtime
from rules.component import RulesComponent
from tests.core.test_clock_runtime import Clocks
from tests.rules.helpers import engine, r, run
from tests.support.site import load
from tests.support.waiting import until

REPEAT = {
    "id": "rep",
    "when": "tank.level",
    "if": "value > 50",
    "notify": "repeat",
    "every": "5s",
    "then": [{"alert": "still high {value}"}],
}


def _live(*docs: dict[str, Any], now: float = 0.0) -> Any:
    e = engine(*docs, now=now)
    e.one_late_repeat = True
    return e


def test_repeats_missed_run_once_and_the_next_is_every_from_now() -> None:
    e = _live(REPEAT)
    assert run(e, r(1000.0, "tank.level", 80)) == [("rep", "tank.level", "fired", 1000.0)]
    # 10 min without a timer run (stopped, or the clock stepped): one repeat, not 120
    assert [f.kind for f in e.advance(1600.0)] == ["repeat"]
    assert e.next_deadline() == 1605.0
    assert [(f.kind, f.ts) for f in e.advance(1605.0)] == [("repeat", 1605.0)]
    assert e.rules["rep"].states["tank.level"].last_notified == 1605.0


def test_the_one_late_repeat_is_stamped_with_the_time_it_runs() -> None:
    e = _live(REPEAT)
    run(e, r(1000.0, "tank.level", 80))
    # 10 h without a timer run: the repeat journaled (and sent) is of now, not of 10 h ago
    late = e.advance(37000.0)
    assert [(f.kind, f.ts, f.args[5]) for f in late] == [("repeat", 37000.0, 37000.0)]
    assert e.now == 37000.0


def test_a_repeat_run_on_time_keeps_its_cadence() -> None:
    e = _live(REPEAT)
    run(e, r(1000.0, "tank.level", 80))
    # run a little late (a busy loop): the next stays on the 5 s grid
    assert [(f.kind, f.ts) for f in e.advance(1005.2)] == [("repeat", 1005.0)]
    assert e.next_deadline() == 1010.0


def test_a_replay_runs_each_repeat_at_its_deadline() -> None:
    e = engine(REPEAT)
    run(e, r(1000.0, "tank.level", 80))
    assert [f.ts for f in e.advance(1020.0)] == [1005.0, 1010.0, 1015.0, 1020.0]
    # however late the replay comes to them: each keeps its own time
    assert [f.ts for f in e.advance(37000.0)][:2] == [1025.0, 1030.0]


HIGH_FOR_15S = {
    "id": "high",
    "when": "tank.level",
    "if": "value > 50",
    "for": "15s",
    "then": [{"alert": "tank high {value}"}],
}
SILENT_10M = {
    "id": "silent",
    "when": [{"no_data": "tank.level", "for": "10m"}],
    "then": [{"alert": "tank silent"}],
}


@contextlib.asynccontextmanager
async def _gateway(tmp_path: Path, clocks: Clocks, *docs: dict[str, Any]) -> AsyncIterator[Any]:
    rt = Runtime(
        load(tmp_path, {"clock": {"trust_unsynced": True}}),
        clock=lambda: clocks.wall,
        clock_sample=clocks.sample,
        clock_sync=clocks.sync,
        with_web=False,
    )
    await rt.start()
    try:
        rules = rt.component(RulesComponent)
        assert rules is not None
        for doc in docs:
            rules.put(doc, "test")
        yield rt, rules
    finally:
        await rt.stop()


def _pass(clocks: Clocks, seconds: float) -> None:
    """Real time passing: both clocks move."""
    clocks.wall += seconds
    clocks.mono += seconds


def _level(rt: Runtime, clocks: Clocks, value: float, point: str = "tank.level") -> None:
    rt.hub.ingest([Reading(clocks.wall, point, value)])


async def test_a_forward_step_does_not_fire_a_pending_for(tmp_path: Path) -> None:
    clocks = Clocks()
    async with _gateway(tmp_path, clocks, HIGH_FOR_15S) as (rt, rules):
        _level(rt, clocks, 80)
        _pass(clocks, 3)
        _level(rt, clocks, 80)
        clocks.wall += 3600  # stepped an hour ahead, 3 s into the 15 s
        _level(rt, clocks, 80)
        assert rules.firings == 0
        assert rules.engine.rules["high"].states["tank.level"].phase == "pending"
        assert rules.engine.next_deadline() == clocks.wall + 12
        # counted, and exported as a counter for rate()
        assert rules.status()["timers_moved"] == 1
        exported = {
            (m.name, s.labels.get("counter")): s.value for m in rules.collect_metrics() for s in m.samples
        }
        assert exported[("edge_rules_count", "timers_moved")] == 1
        _pass(clocks, 12)
        _level(rt, clocks, 80)
        assert rules.firings == 1
        assert rules.engine.rules["high"].states["tank.level"].phase == "active"


async def test_a_backward_step_does_not_hold_a_pending_for(tmp_path: Path) -> None:
    clocks = Clocks()
    async with _gateway(tmp_path, clocks, HIGH_FOR_15S) as (rt, rules):
        _level(rt, clocks, 80)
        _pass(clocks, 5)
        clocks.wall -= 600  # a fast clock corrected by 10 min, 5 s into the 15 s
        _level(rt, clocks, 80)
        assert rules.engine.next_deadline() == clocks.wall + 10
        _pass(clocks, 10)
        _level(rt, clocks, 80)
        assert rules.firings == 1  # 15 s after the condition began, not 10 min later


async def test_a_forward_step_does_not_end_a_no_data_period(tmp_path: Path) -> None:
    clocks = Clocks()
    async with _gateway(tmp_path, clocks, SILENT_10M) as (rt, rules):
        _level(rt, clocks, 5)
        _pass(clocks, 8)
        clocks.wall += 3600
        _level(rt, clocks, 1, point="other.point")  # a record stamped after the step
        assert rules.firings == 0
        assert rules.engine.next_deadline() == clocks.wall + 600 - 8
        _pass(clocks, 600 - 8)
        _level(rt, clocks, 1, point="other.point")
        assert rules.firings == 1


async def test_a_forward_step_runs_no_repeat(tmp_path: Path) -> None:
    clocks = Clocks()
    async with _gateway(tmp_path, clocks, REPEAT) as (rt, rules):
        _level(rt, clocks, 80)
        assert rules.firings == 1
        _pass(clocks, 2)
        clocks.wall += 600
        _level(rt, clocks, 80)
        assert rules.firings == 1
        assert rules.engine.next_deadline() == clocks.wall + 3


def _alerts(rt: Runtime) -> list[dict[str, Any]]:
    return [r for r in rt.journal.tail(50) if r["type"] == "event" and r["kind"] == "alert"]


async def test_the_repeat_sent_after_a_long_stop_is_of_its_start(tmp_path: Path) -> None:
    """Stopped for 10 h past a 5 s repeat: the one repeat the start sends is journaled at the start
    (a KPI day, a webhook receiver see it then), not at the deadline 10 h before."""
    clocks = Clocks()
    async with _gateway(tmp_path, clocks, REPEAT) as (rt, rules):
        fired_at = clocks.wall
        _level(rt, clocks, 80)
        await until(lambda: len(_alerts(rt)) == 1, what="the alert journaled")
    _pass(clocks, 10 * 3600)
    async with _gateway(tmp_path, clocks) as (rt, rules):
        alerts = await until(lambda: _alerts(rt)[1:], what="the repeat journaled")
        assert [(a["ts"], a["payload"]["repeat"], a["payload"]["first_fired"]) for a in alerts] == [
            (clocks.wall, True, fired_at)
        ]
        assert rules.engine.next_deadline() == clocks.wall + 5
