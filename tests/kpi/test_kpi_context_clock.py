"""The KPI component measures steps of the wall clock with the clock its component context gives
(`ComponentContext.clock_sample`, `clock_trust`: the runtime's), not with the journal's internals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edge.clock import ClockTrust
from edge.kpi.component import KpiComponent
from edge.kpi.config import KpiConfig
from tests.kpi.test_kpi_clock_step import MIDNIGHT, SITE, SteppedClock, runtime


async def test_the_context_carries_the_runtimes_clock_and_the_kpis_follow_it(tmp_path: Path) -> None:
    clock = SteppedClock(MIDNIGHT + 3600)
    rt = runtime(tmp_path, clock)
    await rt.start()
    try:
        ctx = rt.component_context()
        assert ctx.clock_sample == clock.sample and ctx.clock_trust is rt.clock_trust

        # a context with a clock of its own: the component follows it, whatever the journal holds
        own = SteppedClock(MIDNIGHT + 7200)
        trust = ClockTrust(rt.site.clock, rt.site.site.id, sync=own.sync, clock=own.sample)
        given = dataclasses.replace(ctx, clock_sample=own.sample, clock_trust=trust)
        comp = KpiComponent(given, KpiConfig.model_validate(SITE["kpi"]))
        assert comp.trust is trust
        await comp._watch_clock()
        own.offset += 3600  # the context's clock steps; the runtime's and the journal's do not
        await comp._watch_clock()
        assert comp.clock_paused is not None and "stepped +3600 s" in comp.clock_paused
    finally:
        await rt.stop()
