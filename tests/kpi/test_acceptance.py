"""The figures equal the truth: a real runtime with sim devices on known dropout schedules, a
gateway stopped for a known time, three site hours across a midnight in Asia/Shanghai, lived in
seconds on a fast clock (tests/kpi/helpers.py)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

from edge.kpi.component import KpiComponent
from edge.kpi.days import Days
from edge.runtime import Runtime
from tests.kpi.helpers import FastClock, run_fast
from tests.support.site import load
from tests.support.waiting import until

SPEED = 1200.0  # site seconds per real second
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 3, 10, 22, 30, tzinfo=SHANGHAI).timestamp()  # 14:30 UTC
MIDNIGHT = dt.datetime(2026, 3, 11, 0, 0, tzinfo=SHANGHAI).timestamp()
STOP_AT = T0 + 2700  # 23:15 local
DOWN_FOR = 1200.0  # the gateway is off until about 23:35
END = T0 + 3 * 3600  # 01:30 local
DROP_FIRST, DROP_EVERY, DROP_FOR = 900.0, 3600.0, 900.0
TOLERANCE = 0.005  # half a percentage point

SITE: dict[str, Any] = {
    "site": {"id": "kpi-site", "name": "KPI", "timezone": "Asia/Shanghai"},
    # commits every 10 ms (120 site seconds would pass between the default's commits)
    "storage": {"flush_interval": 0.01},
    "kpi": {"interval": "60s", "close_after": "60s", "availability": "99%", "completeness": "98%"},
    "devices": [
        {
            "id": "steady",
            "driver": "sim",
            "points": [
                {"name": "power", "signal": "random", "interval": "5s"},
                {"name": "mode", "signal": "constant", "value": 3, "interval": "5s", "deadband": 0.5},
                {"name": "temp", "signal": "constant", "value": 21, "interval": "5s", "report_every": "10s"},
            ],
        },
        {
            "id": "flaky",
            "driver": "sim",
            "points": [{"name": "power", "signal": "random", "interval": "5s"}],
            "faults": [
                {"type": "dropout", "every": DROP_EVERY, "duration": DROP_FOR, "first_after": DROP_FIRST}
            ],
        },
    ],
}


def overlap(a: float, b: float, c: float, d: float) -> float:
    return max(0.0, min(b, d) - max(a, c))


def dropouts(t0: float, until_ts: float) -> list[tuple[float, float]]:
    """The flaky device's scheduled dropouts for a driver started at t0."""
    out, k = [], 0
    while t0 + DROP_FIRST + k * DROP_EVERY < until_ts:
        start = t0 + DROP_FIRST + k * DROP_EVERY
        out.append((start, min(start + DROP_FOR, until_ts)))
        k += 1
    return out


def union_within(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Seconds of [lo, hi) covered by the union of `intervals`."""
    total, reach = 0.0, lo
    for a, b in sorted(intervals):
        a, b = max(a, reach), min(b, hi)
        if b > a:
            total += b - a
            reach = b
    return total


def rows(path: str, sql: str, *args: Any) -> list[Any]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, args).fetchall()


def journal_events(path: str, kind: str) -> list[tuple[float, str]]:
    return rows(path, "SELECT ts, payload FROM journal WHERE kind=? ORDER BY seq", kind)


class Truth:
    """What happened, read from the journal's rows with plain SQL: when the gateway was off, when
    each device said it was offline, which readings arrived. The KPIs must agree with it."""

    def __init__(self, path: str, end: float) -> None:
        self.path = path
        self.end = end
        stops = [ts for ts, _p in journal_events(path, "gateway_stopped")]
        starts = [ts for ts, _p in journal_events(path, "gateway_started")]
        self.gateway_down = [
            (a, min(b for b in starts if b >= a)) for a in stops if any(b >= a for b in starts)
        ]
        self.offline: dict[str, list[tuple[float, float]]] = {}
        for dev in ("steady", "flaky"):
            spans, since = [], None
            for ts, kind, payload in rows(
                path,
                "SELECT ts, kind, payload FROM journal WHERE (kind='device_state' AND point=?) "
                "OR kind='gateway_stopped' ORDER BY seq",
                dev,
            ):
                # a gateway stop ends what its devices said: the next run starts them afresh
                state = json.loads(payload)["state"] if kind == "device_state" else "stopped"
                if state == "offline" and since is None:
                    since = ts
                elif state != "offline" and since is not None:
                    spans.append((since, ts))
                    since = None
            if since is not None:
                spans.append((since, end))
            self.offline[dev] = spans

    def first_seen(self, dev: str) -> float:
        found = rows(self.path, "SELECT min(ts) FROM journal WHERE point=? OR point LIKE ?", dev, dev + ".%")
        return float(found[0][0])

    def down(self, dev: str) -> list[tuple[float, float]]:
        return self.gateway_down + self.offline[dev]

    def availability(self, dev: str, lo: float, hi: float) -> float:
        return 1 - union_within(self.down(dev), lo, hi) / (hi - lo)

    def count_completeness(self, point: str, lo: float, hi: float, poll: float) -> float:
        n = rows(
            self.path,
            "SELECT count(*) FROM journal WHERE point=? AND kind IS NULL AND quality & 3 = 0 AND ts >= ? AND ts < ?",
            point,
            lo,
            hi,
        )[0][0]
        return min(1.0, n / ((hi - lo) / poll))

    def report_completeness(self, point: str, lo: float, hi: float, every: float, poll: float) -> float:
        """1 - the seconds a report was overdue (later than every + one poll after the last) / span."""
        times = [
            r[0]
            for r in rows(
                self.path,
                "SELECT ts FROM journal WHERE point=? AND kind IS NULL AND quality & 3 = 0 ORDER BY seq",
                point,
            )
        ]
        first = self.first_seen(point.partition(".")[0])
        marks = [first, *times, hi]
        missing = sum(overlap(a + every + poll, b, lo, hi) for a, b in itertools.pairwise(marks))
        return 1 - missing / (hi - lo)


async def live_the_night(tmp_path: Path) -> dict[str, Any]:
    clock = FastClock(T0, SPEED)
    site = load(tmp_path, SITE)
    runs: list[tuple[float, float, dict[str, float]]] = []  # (start, end, driver t0 per device)

    async def driver_starts(rt: Runtime) -> dict[str, float]:
        await until(lambda: all(rt.driver(d) is not None for d in ("steady", "flaky")), timeout=10)
        return {d: rt.driver(d)._t0 for d in ("steady", "flaky")}  # type: ignore[union-attr]

    rt = Runtime(site, clock=clock, clock_sample=clock.sample, with_web=False)
    await rt.start()
    starts = await driver_starts(rt)
    await until(lambda: clock() >= STOP_AT, timeout=30, interval=5)
    stopped = clock.freeze()
    await rt.stop()
    runs.append((T0, stopped, starts))
    clock.resume(DOWN_FOR)

    rt = Runtime(site, clock=clock, clock_sample=clock.sample, with_web=False)
    await rt.start()
    starts = await driver_starts(rt)
    await until(lambda: clock() >= END, timeout=60, interval=5)
    comp = rt.component(KpiComponent)
    assert comp is not None
    await comp.step()
    end = clock.freeze()
    today = comp.today()
    await comp.step()
    await rt.stop()
    restarted = min(ts for ts, _p in journal_events(site.storage.path, "gateway_started") if ts > stopped)
    runs.append((restarted, end, starts))
    return {
        "site": site,
        "runs": runs,
        "stopped": stopped,
        "restarted": restarted,
        "end": end,
        "today": today,
    }


def test_availability_and_completeness_equal_the_truth_across_a_shanghai_midnight_and_a_stop(
    tmp_path: Path,
) -> None:
    night = run_fast(live_the_night(tmp_path), SPEED)
    site = night["site"]
    path = site.storage.path
    days = Days("Asia/Shanghai")
    assert days.day_of(T0) == "2026-03-10" and days.day_of(night["end"]) == "2026-03-11"

    # day one was closed after its local midnight: kpi_daily carries it upstream
    daily = journal_events(path, "kpi_daily")
    assert len(daily) == 1
    first_day = json.loads(daily[0][1])
    assert first_day["day"] == "2026-03-10" and first_day["timezone"] == "Asia/Shanghai"
    assert MIDNIGHT <= daily[0][0] < MIDNIGHT + 600
    # below target (99%) on both devices: one alert for the day
    alerts = [json.loads(p) for _ts, p in journal_events(path, "alert")]
    assert [a["day"] for a in alerts] == ["2026-03-10"]

    truth = Truth(path, night["end"])
    gw = first_day["gateway"]
    assert abs(gw["down_s"] - (night["restarted"] - night["stopped"])) < 1.0
    assert DOWN_FOR <= gw["down_s"] < DOWN_FOR + 900  # the new run takes some real time to start
    assert gw["stops"] == 1 and gw["starts"] == 2

    # the flaky device went offline on its schedule (a sample or two late at most), the steady one never
    assert truth.offline["steady"] == []
    scheduled = [
        a for start, stop, t0 in night["runs"] for a, _b in dropouts(t0["flaky"], stop) if a >= start
    ]
    assert len(truth.offline["flaky"]) == len(scheduled) >= 2
    for (went, _back), due in zip(truth.offline["flaky"], scheduled, strict=True):
        assert due <= went < due + 300

    checks = []
    closed = [{"id": dev, **fig} for dev, fig in first_day["devices"].items()]
    for day, figures in (("2026-03-10", closed), ("2026-03-11", night["today"]["devices"])):
        start, _end = Days("Asia/Shanghai").bounds_of(day)
        for fig in figures:
            dev = fig["id"]
            lo = max(start, truth.first_seen(dev))
            hi = lo + fig["observed_s"]
            checks.append((day, dev, "availability", fig["availability"], truth.availability(dev, lo, hi)))
            for pid, point in fig["points"].items():
                if point["method"] == "count":
                    want = truth.count_completeness(pid, lo, hi, 5.0)
                elif point["method"] == "report_every":
                    want = truth.report_completeness(pid, lo, hi, 10.0, 5.0)
                else:  # the on-change point is good whenever its device answers
                    want = truth.availability(dev, lo, hi)
                checks.append((day, pid, point["method"], point["completeness"], want))
    assert len(checks) == 2 * (2 + 4)
    off = [c for c in checks if abs(c[3] - c[4]) > TOLERANCE]
    assert off == [], "\n".join(
        f"{d} {what} {fig}: {got:.4f} vs truth {want:.4f}" for d, what, fig, got, want in off
    )
    # the two devices differ by far more than the tolerance: the checks compare real differences
    assert truth.availability("flaky", T0, MIDNIGHT) < truth.availability("steady", T0, MIDNIGHT) - 0.05

    # the restart in the middle of day one neither counted a record twice nor lost one
    from edge.kpi.store import KpiStore
    from edge.state import StateDB

    state = StateDB(site.storage.resolved_state_path())
    try:
        store = KpiStore(state)
        folded = store.meta("state")["pos"]  # the last gateway_stopped waits for the next start
        assert folded == rows(path, "SELECT max(seq) FROM journal")[0][0] - 1
        for day in ("2026-03-10", "2026-03-11"):
            start, end = days.bounds_of(day)
            found = store.day(day)
            assert found is not None
            held = "SELECT count(*) FROM journal WHERE ts >= ? AND ts < ? AND seq <= ?"
            assert found[0]["rec"][0] == rows(path, held, start, end, folded)[0][0], day
    finally:
        state.close()
