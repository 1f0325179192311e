"""Rules never launder private data: a dry run shows each role only up to its privacy class, and a
virtual point written by `set:` is as private as what the rule read, for the UI and upstream."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.model import Event, Reading
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import signed_in_roles
from tests.web.test_privacy import KIOSK, alert_rule

PULL_TOKEN = "city-token-0123456789"
SITE = (
    "site: {id: rule-privacy-test}"
    + KIOSK
    + """consumers:
  - {id: city, token_env: CITY_TOKEN}
rules: {max_actions_per_minute: 600}
"""
)
BP = {"resident": "王芳", "systolic_mmhg": 151}  # a health kind that does not name its class


@pytest.fixture(autouse=True)
def _pull_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITY_TOKEN", PULL_TOKEN)


def _dry(rule_id: str, when: Any, message: str, cond: str | None = None) -> dict[str, Any]:
    return {"rule": alert_rule(rule_id, when, message, cond), "hours": 1}


async def test_validate_and_dry_run_need_the_rules_scope(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        async with signed_in_roles(rt) as clients:
            body = _dry("bp", [{"event": "blood_pressure"}], "{payload[resident]} {payload[systolic_mmhg]}")
            viewer = clients["viewer"]
            for path, doc in (("validate", body["rule"]), ("dry-run", body)):
                resp = await viewer.request("POST", f"/api/v1/rules/{path}", json=doc)
                assert resp.status == 403, path
                assert "rules" in (await resp.json())["detail"]
            assert (await clients["technician"].json("POST", "/api/v1/rules/validate", body["rule"]))["ok"]


async def test_a_dry_run_shows_each_role_only_what_its_class_may_see(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        now = time.time()
        rt.hub.ingest(
            [
                Reading(now - 90, "kiosk-1.last_systolic", 151.0),
                Event("blood_pressure", "kiosk-1", payload=dict(BP), ts=now - 80),
                Event(
                    "vehicle_passage",
                    "gate-1",
                    payload={"plate": "沪A12345", "privacy": "personal"},
                    ts=now - 70,
                ),
                Reading(now - 60, "kiosk-1.in_use", True),
            ]
        )
        await rt.journal.flush()
        runs = {
            "bp": _dry("bp", [{"event": "blood_pressure"}], "{payload[resident]} {payload[systolic_mmhg]}"),
            "plate": _dry("plate", [{"event": "vehicle_passage"}], "{payload[plate]}"),
            # public trigger, but the condition reads a sensitive point: the firing says so
            "reads": _dry("reads", "kiosk-1.in_use", "in use", "value and p('kiosk-1.last_systolic') > 140"),
            # a computed point may be any point: as private as the most private one
            "computed": _dry(
                "computed",
                "kiosk-1.in_use",
                "{device} in use",
                "value and (p(device + '.last_systolic') or 0) > 140",
            ),
            "public": _dry("public", "kiosk-1.in_use", "in use {value}", "value"),
        }
        async with signed_in_roles(rt) as clients:
            seen: dict[str, dict[str, Any]] = {}
            for role in ("technician", "admin"):
                for name, body in runs.items():
                    resp = await clients[role].request("POST", "/api/v1/rules/dry-run", json=body)
                    text = await resp.text()
                    if role == "technician" and name in ("bp", "reads", "computed"):
                        # whether and when a rule over data above the class fires would tell what
                        # that data holds: refused, with nothing of it
                        assert resp.status == 403, (name, text)
                        assert "王芳" not in text and "151" not in text, name
                        assert "sensitive" in (await resp.json())["detail"], name
                        continue
                    assert resp.status == 200, text
                    firings = (await resp.json())["firings"]
                    assert len(firings) == 1, (role, name, firings)
                    seen[f"{role}:{name}"] = firings[0]
            assert seen["admin:bp"]["message"] == "王芳 151" and seen["admin:bp"]["privacy"] == "sensitive"
            assert seen["admin:bp"]["key"] == "kiosk-1" and "redacted" not in seen["admin:bp"]
            assert seen["admin:reads"]["message"] == "in use"
            assert seen["admin:computed"]["message"] == "kiosk-1 in use"
            # personal data is within a technician's class; public stays public
            assert seen["technician:plate"]["message"] == "沪A12345"
            assert seen["technician:plate"]["privacy"] == "personal"
            assert seen["technician:public"]["message"] == "in use True"
            assert seen["technician:public"]["privacy"] == "public"


async def test_a_point_set_from_health_data_is_as_private_as_the_health_data(tmp_path: Path) -> None:
    rules = [
        {
            "id": "copy-bp",
            "when": [{"event": "blood_pressure"}],
            "notify": "always",
            "then": [{"set": {"point": "health.last_bp", "expr": "payload['systolic_mmhg']"}}],
        },
        {
            "id": "copy-busy",
            "when": "kiosk-1.in_use",
            "notify": "always",
            "then": [{"set": {"point": "health.last_bp", "expr": "0"}}],
        },
    ]
    async with running_site(tmp_path, SITE) as rt:
        for rule in rules:
            rt.components["rules"].put(rule, "test", "create")
        points = rt.hub.points
        rt.hub.ingest([Reading(time.time(), "kiosk-1.in_use", True)])
        await until(lambda: "health.last_bp" in rt.hub.latest, what="the public set")
        assert points["health.last_bp"].privacy == "public"  # public input: a public point

        rt.hub.ingest([Event("blood_pressure", "kiosk-1", payload=dict(BP), ts=time.time())])
        await until(lambda: rt.hub.latest["health.last_bp"].value == 151, what="the health set")
        assert points["health.last_bp"].privacy == "sensitive"

        # public input again: the point keeps the class its earlier values had
        rt.hub.ingest([Reading(time.time(), "kiosk-1.in_use", True)])
        await until(lambda: rt.hub.latest["health.last_bp"].value == 0, what="the second public set")
        assert points["health.last_bp"].privacy == "sensitive"
        rt.hub.ingest([Event("blood_pressure", "kiosk-1", payload=dict(BP), ts=time.time())])
        await until(lambda: rt.hub.latest["health.last_bp"].value == 151, what="the health set again")
        await rt.journal.flush()

        async with signed_in_roles(rt) as clients:
            for role in ("viewer", "technician"):
                latest = (await clients[role].json("GET", "/api/v1/latest"))["latest"]
                assert "health.last_bp" not in {r["point"] for r in latest}, role
            admin = (await clients["admin"].json("GET", "/api/v1/latest"))["latest"]
            assert {r["point"]: r["value"] for r in admin}["health.last_bp"] == 151
            listed = (await clients["viewer"].json("GET", "/api/v1/points"))["points"]
            assert {p["id"]: p["privacy"] for p in listed}["health.last_bp"] == "sensitive"

        # the pull consumer (max_privacy personal by default) gets none of its readings
        base = f"http://127.0.0.1:{rt.web_port}"
        headers = {"Authorization": f"Bearer {PULL_TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as s:
            async with s.get(f"{base}/api/v1/stream?after=0&limit=1000") as r:
                assert r.status == 200
                items = (await r.json())["items"]
            async with s.get(f"{base}/api/v1/latest") as r:
                pulled_latest = (await r.json())["latest"]
        assert items, "the consumer reads the journal"
        assert not [i for i in items if i.get("point") == "health.last_bp"]
        assert "health.last_bp" not in {r["point"] for r in pulled_latest}


async def test_a_rule_over_data_above_the_callers_class_lists_without_its_state(tmp_path: Path) -> None:
    """When a blood-pressure rule last fired, and whether it holds now, tell what the kiosk
    measured: in the rules list and a rule's page those below its class get neither (as its dry
    run refuses them); a rule over public data shows both to everyone."""
    async with running_site(tmp_path, SITE) as rt:
        rules = rt.components["rules"]
        rules.put(
            alert_rule("bp-high", [{"event": "blood_pressure"}], "high", "payload['systolic_mmhg'] >= 140"),
            "t",
        )
        rules.put(alert_rule("kiosk-busy", [{"point": "kiosk-1.in_use"}], "in use", "value"), "t")
        now = time.time()
        rt.hub.ingest(
            [
                Event("blood_pressure", "kiosk-1", payload=dict(BP), ts=now),
                Reading(now, "kiosk-1.in_use", True),
            ]
        )
        await until(
            lambda: all(rules.engine.rules[r].last_fired for r in ("bp-high", "kiosk-busy")),
            what="both rules fired",
        )
        async with signed_in_roles(rt) as clients:
            for role in ("admin", "technician", "viewer"):
                listed = {r["id"]: r for r in (await clients[role].json("GET", "/api/v1/rules"))["rules"]}
                one = await clients[role].json("GET", "/api/v1/rules/bp-high")
                for shown in (listed["bp-high"], one):
                    if role == "admin":
                        assert shown["last_fired"] and shown["state"] == "active" and "redacted" not in shown
                    else:
                        assert shown["last_fired"] is None and shown["state"] == "redacted", role
                        assert shown["redacted"] is True
                assert listed["kiosk-busy"]["last_fired"] and listed["kiosk-busy"]["state"] == "active", role
