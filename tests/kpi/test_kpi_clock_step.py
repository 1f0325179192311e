"""A step of the wall clock is a gap in the KPIs: neither uptime nor a device's downtime; from it no
day closes and `keep` deletes nothing until the clock's trust, checked after the step, says the
clock is trusted. The clock is the runtime's injectable source (edge.clock), stepped by the test."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge.clock import ClockSample, SyncStatus
from edge.kpi.component import KpiComponent
from edge.kpi.days import Days
from edge.kpi.engine import new_day
from edge.runtime import Runtime
from tests.store.helpers import sql
from tests.support.site import load
from tests.support.waiting import until

DAYS = Days("Asia/Shanghai")
MIDNIGHT = DAYS.bounds_of("2026-12-08")[0]


class SteppedClock:
    """Real time from `start` on, plus the steps the test makes; the monotonic clock never steps."""

    def __init__(self, start: float) -> None:
        self.offset = start - time.monotonic()
        self.synced = False

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def sample(self) -> ClockSample:
        mono = time.monotonic()
        return ClockSample(mono + self.offset, mono)

    def sync(self) -> SyncStatus:
        return SyncStatus(self.synced, "test clock")


SITE: dict[str, Any] = {
    "site": {"id": "kpi-step", "name": "KPI", "timezone": "Asia/Shanghai"},
    "storage": {"flush_interval": 0.01},
    "clock": {"trust_unsynced": False},
    "kpi": {"interval": "20ms", "close_after": "1s", "keep": 30},
    "devices": [
        {"id": "m1", "driver": "sim", "points": [{"name": "p", "signal": "random", "interval": "50ms"}]},
        {
            "id": "m2",
            "driver": "sim",
            "points": [
                {"name": "r", "signal": "constant", "value": 7, "interval": "50ms", "report_every": "1s"}
            ],
        },
    ],
}


def runtime(tmp_path: Path, clock: SteppedClock) -> Runtime:
    rt = Runtime(
        load(tmp_path, SITE), clock=clock, with_web=False, clock_sample=clock.sample, clock_sync=clock.sync
    )
    rt.clock_check_interval = 0.01
    return rt


def kinds(rt: Runtime, kind: str) -> list[str]:
    return [p for (p,) in sql(rt.journal, "SELECT payload FROM journal WHERE kind=? ORDER BY seq", (kind,))]


async def folded(comp: KpiComponent, rt: Runtime) -> None:
    """Every record committed so far folded (a step of the component, run now)."""
    await rt.journal.flush()
    await comp.step()


async def test_a_forward_step_across_midnight_is_a_gap_and_closes_no_day_until_trusted(
    tmp_path: Path,
) -> None:
    clock = SteppedClock(MIDNIGHT - 600)  # 23:50 local
    rt = runtime(tmp_path, clock)
    await rt.start()
    try:
        comp = rt.component(KpiComponent)
        assert comp is not None
        await until(lambda: rt.hub.received >= 20, what="readings before the step")
        await folded(comp, rt)
        clock.offset += 3 * 3600  # to 02:50 of the next day: nothing lived in between
        received = rt.hub.received
        await until(lambda: rt.hub.received >= received + 20, what="readings after the step")
        await folded(comp, rt)

        # nothing closed, nothing sent upstream, no alert; the status says why
        assert kinds(rt, "kpi_daily") == [] and kinds(rt, "alert") == []
        assert comp.store.open_days() == ["2026-12-07", "2026-12-08"]
        assert "stepped +10800 s" in str(comp.status().get("clock_paused"))
        before = comp.figures("2026-12-07", comp.fold.days["2026-12-07"], closed=False, now=clock())
        after = comp.today()
        assert after["day"] == "2026-12-08" and after["clock_paused"] == comp.status()["clock_paused"]
        # the three hours are neither up nor down: the devices were observed for what they lived
        for fig in (before, after):
            assert fig["clock_gap_s"] > 0
            assert fig["gateway"]["observed_s"] < 600
            for dev in fig["devices"]:
                assert dev["observed_s"] < 600 and dev["availability"] == 1.0
        m2 = {d["id"]: d for d in after["devices"]}["m2"]
        # its report was not overdue across the gap (it would be 0 then): what is left is the
        # at most one sampling interval of the step that cannot be told from lived time
        assert m2["completeness"] > 0.5
        assert before["clock_gap_s"] + after["clock_gap_s"] > 3 * 3600 - 60

        # the clock is trusted again (NTP answered): the finished day closes, once, with the truth
        clock.synced = True
        await until(lambda: comp.clock_paused is None, what="the KPIs to believe the clock again")
        await comp.step()
        await rt.journal.flush()
        sent = [json.loads(p) for p in kinds(rt, "kpi_daily")]
        assert [s["day"] for s in sent] == ["2026-12-07"]
        assert sent[0]["gateway"]["observed_s"] < 600
        assert sent[0]["clock_gap_s"] == before["clock_gap_s"]  # upstream sees the day's gap too
        assert comp.status()["clock_paused"] is None
    finally:
        await rt.stop()


async def test_a_step_beyond_keep_deletes_no_stored_day_and_closes_no_phantom_day(tmp_path: Path) -> None:
    clock = SteppedClock(MIDNIGHT + 12 * 3600)  # noon of 2026-12-08
    rt = runtime(tmp_path, clock)
    await rt.start()
    try:
        comp = rt.component(KpiComponent)
        assert comp is not None
        past = {f"2026-12-0{d}" for d in range(1, 8)}
        with comp.store.db.lock:  # closed days stored by earlier runs, within keep
            comp.store.db.conn.executemany(
                "INSERT INTO kpi_days(day, data, closed, figures) VALUES(?, ?, 1, '{}')",
                [(day, json.dumps(new_day())) for day in sorted(past)],
            )
        await until(lambda: rt.hub.received >= 20, what="readings before the step")
        await folded(comp, rt)

        clock.offset += 500 * 86400  # far beyond keep (30 days)
        received = rt.hub.received
        await until(lambda: rt.hub.received >= received + 20, what="readings after the step")
        await folded(comp, rt)
        clock.offset -= 500 * 86400  # and back
        received = rt.hub.received
        await until(lambda: rt.hub.received >= received + 20, what="readings after the step back")
        await folded(comp, rt)

        stored = {d for d, _data, _closed in comp.store.days_between("2000-01-01", "2100-01-01")}
        assert past <= stored  # nothing deleted by keep
        assert kinds(rt, "kpi_daily") == [] and kinds(rt, "alert") == []
        assert set(comp.store.open_days()) == stored - past  # no phantom day closed
        assert len(stored - past) <= 3  # today, and the day of the phantom records: no day between
        assert comp.status()["clock_paused"] is not None
        today = comp.today()
        assert today["gateway"]["observed_s"] < 600 and today["clock_gap_s"] > 0
    finally:
        await rt.stop()
