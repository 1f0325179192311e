"""A pattern rule (`when: bin-*.fill_pct`) fires one alert per point, all with the rule as their
source: the KPIs count each, credit an acknowledgement to the alert it names and a clear to the
point it clears, as the rules engine keeps one state per rule and point."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.kpi.component import KpiComponent
from edge.kpi.days import Days
from edge.model import Event, Severity
from edge.runtime import Runtime
from tests.support.site import load


def alert(point: str, ts: float, state: str = "fired") -> Event:
    payload = {
        "rule": "bin-full",
        "name": "Bin full",
        "state": state,
        "message": f"{point} {state}",
        "point": point,
        "value": 90,
    }
    return Event("alert", "bin-full", Severity.WARNING if state == "fired" else Severity.INFO, payload, ts)


async def test_each_point_of_a_pattern_rule_is_its_own_alert(tmp_path: Path) -> None:
    days = Days("Asia/Shanghai")
    start, _end = days.bounds_of(days.day_of(time.time()))
    offset = start + 12 * 3600 - time.time()  # noon on the site, so every scripted time is today

    def clock() -> float:
        return time.time() + offset

    doc: dict[str, Any] = {
        "site": {"id": "kpi-bins", "name": "KPI", "timezone": "Asia/Shanghai"},
        "kpi": {"interval": "1h", "ack_within": {"warning": "20s"}},
        "devices": [],
    }
    rt = Runtime(load(tmp_path, doc), clock=clock, with_web=False)
    await rt.start()
    try:
        now = clock()
        for point in ("bin-1.fill_pct", "bin-2.fill_pct", "bin-3.fill_pct"):
            rt.hub.publish_event(alert(point, now - 100))
        rt.hub.publish_event(alert("bin-3.fill_pct", now - 90, state="cleared"))
        rt.hub.publish_event(alert("bin-3.fill_pct", now - 5))  # fired again after its clear
        await rt.journal.flush()
        fired = {
            rec["payload"]["point"]: rec["seq"]
            for rec in rt.journal.tail(50)
            if rec["type"] == "event" and rec["kind"] == "alert" and rec["payload"]["state"] == "fired"
        }
        payload = {"seq": fired["bin-2.fill_pct"], "user": "wang", "comment": "", "privacy": "personal"}
        rt.hub.publish_event(Event("alert_ack", "kpi-bins", Severity.INFO, payload, now - 92))
        await rt.journal.flush()
        comp = rt.component(KpiComponent)
        assert comp is not None
        await comp.step()
        figures = comp.today()
        rows = {r["alert"]: r for r in comp.store.alerts_of(figures["day"])}
    finally:
        await rt.stop()
    a = figures["alerts"]
    assert a["count"] == 4 and a["by_severity"] == {"warning": 4}
    # bin-2 acknowledged after 8 s; bin-1 and the first bin-3 waited past 20 s unacknowledged
    assert a["acknowledged"] == 1 and a["ack_mean_s"] == 8.0
    assert rows[fired["bin-2.fill_pct"]]["ack_ts"] is not None
    assert a["not_acked_within_target"] == {"warning": 2}
    assert a["awaiting_ack"] == 1  # bin-3 again, 5 s old
    # the clear of bin-3 cleared bin-3 only
    assert a["cleared"] == 1 and a["clear_mean_s"] == 10.0
