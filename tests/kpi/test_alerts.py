"""Alert response from scripted alerts and acknowledgements: the exact mean and p90 time to
acknowledge and to clear, repeats of an open alert joined to it, the per-severity targets, and
rule actions executed and failed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from edge.kpi.component import KpiComponent
from edge.kpi.days import Days
from edge.model import Event, Severity
from edge.runtime import Runtime
from tests.support.site import load


def alert(rule: str, severity: str, ts: float, state: str = "fired") -> Event:
    payload = {
        "rule": rule,
        "name": rule,
        "state": state,
        "message": f"{rule} {state}",
        "point": None,
        "value": 1,
    }
    return Event("alert", rule, severity if state == "fired" else Severity.INFO, payload, ts)


async def test_scripted_acknowledgements_give_the_exact_response_figures(tmp_path: Path) -> None:
    days = Days("Asia/Shanghai")
    start, _end = days.bounds_of(days.day_of(time.time()))
    offset = start + 12 * 3600 - time.time()  # noon on the site, so every scripted time is today

    def clock() -> float:
        return time.time() + offset

    doc: dict[str, Any] = {
        "site": {"id": "kpi-alerts", "name": "KPI", "timezone": "Asia/Shanghai"},
        "kpi": {"interval": "1h", "ack_within": {"critical": "15m", "warning": "4h"}},
        "devices": [],
    }
    rt = Runtime(load(tmp_path, doc), clock=clock, with_web=False)
    await rt.start()
    try:
        now = clock()
        fired = {
            "door": alert("door", "warning", now - 500),
            "pump": alert("pump", "warning", now - 400),
            "fire": alert("fire", "critical", now - 3000),
            "lift": alert("lift", "critical", now - 1000),
            "leak": alert("leak", "warning", now - 10),
        }
        for event in fired.values():
            rt.hub.publish_event(event)
        rt.hub.publish_event(alert("pump", "warning", now - 390))  # a repeat while still open
        rt.hub.publish_event(alert("door", "warning", now - 400, state="cleared"))
        rt.hub.publish_event(
            Event(
                "command",
                "valve",
                Severity.INFO,
                {"point": "valve.open", "by": "rule:pump", "status": "ok"},
                now - 5,
            )
        )
        rt.hub.publish_event(Event("rule_action_failed", "pump", Severity.WARNING, {"rule": "pump"}, now - 5))
        await rt.journal.flush()
        seqs: dict[str, list[int]] = {}
        for rec in rt.journal.tail(50):
            if rec["type"] == "event" and rec["kind"] == "alert" and rec["payload"]["state"] == "fired":
                seqs.setdefault(rec["source"], []).append(rec["seq"])
        acks = [("door", 0, now - 470), ("pump", 1, now - 340), ("fire", 0, now - 2000)]  # 30, 60, 1000 s
        for source, nth, ts in acks:
            payload = {"seq": seqs[source][nth], "user": "wang", "comment": "", "privacy": "personal"}
            rt.hub.publish_event(Event("alert_ack", "kpi-alerts", Severity.INFO, payload, ts))
        await rt.journal.flush()
        comp = rt.component(KpiComponent)
        assert comp is not None
        await comp.step()
        figures = comp.today()
    finally:
        await rt.stop()
    a = figures["alerts"]
    assert a["count"] == 5 and a["by_severity"] == {"critical": 2, "warning": 3}
    assert a["acknowledged"] == 3
    assert a["ack_mean_s"] == pytest.approx((30 + 60 + 1000) / 3, abs=1e-3)
    assert a["ack_p90_s"] == pytest.approx(1000, abs=1e-3)
    assert a["cleared"] == 1 and a["clear_mean_s"] == pytest.approx(100, abs=1e-3)
    # fire acknowledged after 1000 s > 15 min, lift not acknowledged 1000 s after it fired
    assert a["not_acked_within_target"] == {"critical": 2}
    assert a["awaiting_ack"] == 1  # leak: 10 s old, 4 h to go
    # every alert a rule journaled (the repeat and the clear too) and its write; one failure
    assert figures["rule_actions"] == {"executed": 8, "failed": 1}
