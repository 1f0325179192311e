"""Schedules never act on a forward jump of the wall clock: the matches a jump goes over are not
run (not all at once, as the engine's timers would), each schedule resumes at its first match after
the new time, and the skip is journaled. Driven by a wall clock the test sets, against the real
monotonic clock, in a running gateway."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from edge.model import Reading
from edge.runtime import Runtime
from rules.component import RulesComponent
from rules.cron import Cron
from rules.engine import Engine
from rules.model import CompiledRule
from tests.core.test_clock_runtime import START, Clocks
from tests.rules.test_schedule_reset import T0, _rule
from tests.store.helpers import sql
from tests.support.site import load
from tests.support.waiting import until_async

HOURLY = {
    "id": "hourly",
    "when": [{"schedule": "0 * * * *"}],
    "notify": "always",
    "then": [{"event": {"kind": "tick", "message": "tick"}}],
}
DAY = 86400.0


def test_the_engine_skips_the_schedule_matches_in_a_span_and_resumes_after_it() -> None:
    engine = Engine()
    engine.add(cast(CompiledRule, _rule("True")), now=T0)  # every 10 minutes
    assert engine.has_schedules
    assert engine.skip_schedules(T0 + 3600, T0 + 7200) == []  # nothing due in that span: kept
    assert engine.next_deadline() == T0 + 600
    assert engine.skip_schedules(T0, T0 + 3 * 3600 + 30) == ["nightly"]
    assert engine.next_deadline() == T0 + 3 * 3600 + 600
    fired = [f.ts for f in engine.advance(T0 + 3 * 3600 + 600)]
    assert fired == [T0 + 3 * 3600 + 600]


async def test_a_day_long_jump_runs_no_hourly_schedule_and_is_journaled(tmp_path: Path) -> None:
    clocks = Clocks()
    clocks.wall = START + 60  # a minute past the hour
    rt = Runtime(
        load(tmp_path, {"clock": {"trust_unsynced": True}}),
        clock=lambda: clocks.wall,
        clock_sample=clocks.sample,
        clock_sync=clocks.sync,
    )
    await rt.start()
    try:
        rules = rt.component(RulesComponent)
        assert rules is not None
        rules.put(HOURLY, "test")
        hour = Cron("0 * * * *")
        assert rules.engine.next_deadline() == START + 3600
        rt.hub.ingest([Reading(clocks.wall, "dev.p", 1.0)])  # the guard's look before the jump

        clocks.wall += DAY + 1800  # set a day and a half hour ahead, no time having passed
        rt.hub.ingest([Reading(clocks.wall, "dev.p", 2.0)])  # the engine now sees the new time
        # the next match after the new time, not the 25 the jump went over
        assert rules.engine.next_deadline() == hour.next_after(clocks.wall, rules.engine.tz)
        assert rules.firings == 0 and rules.status()["schedules_skipped"] == 1

        def journaled(kind: str) -> list[str]:
            return [p for (p,) in sql(rt.journal, f"SELECT payload FROM journal WHERE kind='{kind}'")]

        async def skip_journaled() -> bool:
            await rt.journal.flush()
            return bool(journaled("schedules_skipped"))

        await until_async(skip_journaled, what="the skip's event journaled")
        skipped = journaled("schedules_skipped")
        assert len(skipped) == 1 and '"rules":["hourly"]' in skipped[0], skipped
        assert journaled("tick") == []
    finally:
        await rt.stop()
