"""Data minimisation in the local UI: each role sees personal/sensitive data only up to its class."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.model import Event, Reading
from tests.support.site import KIOSK_DEVICE, running_site
from tests.web.conftest import clients_by_role, signed_in_roles

#: a health kiosk whose last systolic reading is sensitive (a site file's `devices:` section)
KIOSK = "\ndevices:" + KIOSK_DEVICE
SITE = "site: {id: privacy-test}" + KIOSK


def alert_rule(rule_id: str, when: Any, message: str, cond: str | None = None) -> dict[str, Any]:
    """A rule that raises an alert with `message` (when `cond` holds, if given)."""
    rule: dict[str, Any] = {"id": rule_id, "when": when, "then": [{"alert": message}]}
    if cond is not None:
        rule["if"] = cond
    return rule


def _blood_pressure(systolic: int, ts: float) -> Event:
    """A kiosk measurement that says its class: sensitive."""
    return Event(
        "blood_pressure", "kiosk-1", payload={"systolic_mmhg": systolic, "privacy": "sensitive"}, ts=ts
    )


_users = clients_by_role  # the name tests/web/test_browser_rule_privacy.py imports


async def test_each_role_sees_private_payloads_only_up_to_its_class(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        now = time.time()
        rt.hub.ingest(
            [
                _blood_pressure(151, now),
                Event(
                    "vehicle_passage", "kiosk-1", payload={"plate": "沪A12345", "privacy": "personal"}, ts=now
                ),
                Event("bin_full", "kiosk-1", payload={"fill_pct": 91}, ts=now),
                Reading(now, "kiosk-1.last_systolic", 151.0),
            ]
        )
        await rt.journal.flush()
        async with signed_in_roles(rt) as clients:
            seen = {}
            for role, c in clients.items():
                events = (await c.json("GET", "/api/v1/events?source=kiosk-1"))["events"]
                seen[role] = {e["kind"]: e["payload"] for e in events}
            assert seen["admin"]["blood_pressure"]["systolic_mmhg"] == 151
            assert seen["technician"]["blood_pressure"] == {"privacy": "sensitive", "redacted": True}
            assert seen["technician"]["vehicle_passage"]["plate"] == "沪A12345"
            assert seen["viewer"]["vehicle_passage"] == {"privacy": "personal", "redacted": True}
            assert seen["viewer"]["bin_full"]["fill_pct"] == 91

            history = "/api/v1/history?point=kiosk-1.last_systolic&since=0"
            assert (await clients["admin"].json("GET", history))["readings"]
            resp = await clients["viewer"].request("GET", history)
            assert resp.status == 403
            points = (await clients["viewer"].json("GET", "/api/v1/devices/kiosk-1/points"))["points"]
            sensitive = next(p for p in points if p["id"] == "kiosk-1.last_systolic")
            assert sensitive["value"] is None and sensitive["redacted"] == "sensitive"
            latest = (await clients["technician"].json("GET", "/api/v1/latest"))["latest"]
            assert "kiosk-1.last_systolic" not in {r["point"] for r in latest}


async def test_a_technician_commissions_a_sensitive_point_without_seeing_its_value(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        async with signed_in_roles(rt) as clients:
            body = {"point": "kiosk-1.last_systolic"}
            tech = await clients["technician"].json("POST", "/api/v1/commission/read", body)
            assert tech["source"] == "device" and tech["value"] is None and tech["redacted"] == "sensitive"
            admin = await clients["admin"].json("POST", "/api/v1/commission/read", body)
            assert admin["value"] == 120


async def test_an_alert_quoting_private_data_is_as_private_as_what_triggered_it(tmp_path: Path) -> None:
    from tests.support.waiting import until_async

    site = SITE + "rules: {max_actions_per_minute: 600}\n"
    rules = [
        alert_rule(
            "bp-high",
            [{"event": "blood_pressure"}],
            "reading {payload[systolic_mmhg]} mmHg",
            "payload['systolic_mmhg'] >= 140",
        ),
        alert_rule(
            "systolic-high", [{"point": "kiosk-1.last_systolic"}], "last {value} mmHg", "value >= 140"
        ),
        alert_rule("kiosk-busy", [{"point": "kiosk-1.in_use"}], "kiosk in use", "value"),
    ]
    async with running_site(tmp_path, site) as rt:
        for rule in rules:
            rt.components["rules"].put(rule, "test", "create")
        now = time.time()
        rt.hub.ingest(
            [
                _blood_pressure(171, now),
                Reading(now, "kiosk-1.last_systolic", 171.0),
                Reading(now, "kiosk-1.in_use", True),
            ]
        )
        async with signed_in_roles(rt) as clients:

            async def active(role: str) -> dict[str, Any]:
                alerts = (await clients[role].json("GET", "/api/v1/alerts/active"))["alerts"]
                return {a["source"]: a["payload"] for a in alerts}

            await until_async(lambda: _has_three(active("admin")), what="three active alerts")
            admin = await active("admin")
            assert (
                admin["bp-high"]["message"] == "reading 171 mmHg"
                and admin["bp-high"]["privacy"] == "sensitive"
            )
            assert admin["systolic-high"]["privacy"] == "sensitive"
            assert "privacy" not in admin["kiosk-busy"]  # a public trigger: a public alert
            # a viewer sees that two sensitive alerts are active, not which rules raised them (their
            # ids name the conditions) nor how severe they are
            alerts = (await clients["viewer"].json("GET", "/api/v1/alerts/active"))["alerts"]
            shown = sorted((a["source"], a["severity"], str(a["payload"])) for a in alerts)
            hidden = ("redacted", "redacted", str({"privacy": "sensitive", "redacted": True}))
            assert shown[0][0] == "kiosk-busy" and "kiosk in use" in shown[0][2]
            assert shown[1:] == [hidden, hidden]
            events = (await clients["technician"].json("GET", "/api/v1/events?kind=alert"))["events"]
            assert all("171" not in str(e["payload"]) for e in events)
            # nor by what a filter answers: by the rule's id or the severity it hides
            by_rule = (await clients["admin"].json("GET", "/api/v1/events?source=bp-high"))["events"]
            severity = by_rule[0]["severity"]
            assert not (await clients["viewer"].json("GET", "/api/v1/events?source=bp-high"))["events"]
            by_severity = f"/api/v1/events?kind=alert&severity={severity}"
            assert "bp-high" in {
                e["source"] for e in (await clients["admin"].json("GET", by_severity))["events"]
            }
            seen = {e["source"] for e in (await clients["viewer"].json("GET", by_severity))["events"]}
            assert "bp-high" not in seen and "redacted" not in seen


async def _has_three(alerts: Any) -> bool:
    return len(await alerts) == 3


async def test_a_health_measurement_without_a_class_is_sensitive_in_the_ui_as_upstream(
    tmp_path: Path,
) -> None:
    """One rule for every consumer of an event's class (edge.model.event_privacy): a measurement
    kind that does not say its class is sensitive for the local UI too, not only for the sinks."""
    from edge.store.records import IncludeConfig, RecordFilter

    async with running_site(tmp_path, SITE) as rt:
        rt.hub.ingest([Event("weight", "kiosk-1", payload={"weight_kg": 81.5}, ts=time.time())])
        await rt.journal.flush()
        sink = RecordFilter(IncludeConfig(), "personal", lambda: rt.hub.points)
        assert sink.event_privacy("weight", '{"weight_kg": 81.5}') == 2  # withheld upstream...
        async with signed_in_roles(rt) as clients:
            seen = {}
            for role, c in clients.items():
                events = (await c.json("GET", "/api/v1/events?kind=weight"))["events"]
                seen[role] = events[0]["payload"]
            assert seen["admin"] == {"weight_kg": 81.5}
            assert seen["technician"] == {"privacy": "sensitive", "redacted": True}  # ...and here
