"""A write of NaN or an infinity to a numeric point is refused before it reaches the device: from
the API (422 naming the reason) and from a rule's write action (a counted, journaled failure)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.model import Event, Quality, Reading
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import signed_in_roles

SITE = """
site: {id: write-finite}
rules: {max_actions_per_minute: 600}
devices:
  - id: meter
    driver: sim
    points:
      - {name: setpoint, type: float, signal: constant, value: 20.0, writable: true, unit: °C}
      - {name: steps, type: int, signal: constant, value: 3, writable: true}
"""
NOT_FINITE = ("nan", "inf", "-Infinity", "NaN", "1e400")


async def test_api_refuses_non_finite_values_and_keeps_the_point(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_roles(rt) as clients:
        tech = clients["technician"]
        events: list[Event] = []
        rt.hub.subscribe(lambda recs: events.extend(r for r in recs if isinstance(r, Event)))
        driver = await until(lambda: rt.slots["meter"].driver, what="sim driver")
        ok = await tech.json("POST", "/api/v1/points/meter.setpoint/write", {"value": 21.5})
        assert ok["status"] == "ok" and ok["value"] == 21.5
        await until(lambda: getattr(rt.hub.latest.get("meter.setpoint"), "value", None) == 21.5)
        for point in ("meter.setpoint", "meter.steps"):
            for value in NOT_FINITE:
                resp = await tech.request("POST", f"/api/v1/points/{point}/write", json={"value": value})
                body = await resp.json()
                assert resp.status == 422, (point, value, body)
                assert body["status"] == "rejected" and "not a finite number" in body["reason"], body
        # nothing reached the device, and the point still shows the last good write
        assert driver.writes == [("setpoint", 21.5)]
        latest = rt.hub.latest["meter.setpoint"]
        assert latest.value == 21.5 and latest.quality == Quality.GOOD
        shown = await tech.json("GET", "/api/v1/devices/meter/points")
        assert {p["id"]: p for p in shown["points"]}["meter.setpoint"]["value"] == 21.5
        statuses = [c.payload["status"] for c in events if c.kind == "command"]
        assert statuses == ["ok"] + ["rejected"] * (2 * len(NOT_FINITE))


async def test_a_rule_writing_a_non_finite_value_fails_the_action(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        events: list[Event] = []
        rt.hub.subscribe(lambda recs: events.extend(r for r in recs if isinstance(r, Event)))
        driver = await until(lambda: rt.slots["meter"].driver, what="sim driver")
        rules: Any = rt.components["rules"]
        rules.put(
            {
                "id": "bad-setpoint",
                "when": "meter.trigger",
                "then": [
                    {"write": {"point": "meter.setpoint", "value": "nan"}},
                    {"write": {"point": "meter.setpoint", "value": float("inf")}},
                    {"write": {"point": "meter.steps", "value": float("-inf")}},
                ],
            },
            "test",
            "create",
        )
        rt.hub.ingest([Reading(time.time(), "meter.trigger", 1)])
        failed = await until(
            lambda: (
                len([e for e in events if e.kind == "rule_action_failed"]) == 3
                and [e for e in events if e.kind == "rule_action_failed"]
            ),
            what="three failed write actions",
        )
        assert all("not a finite number" in e.payload["error"] for e in failed), failed
        commands = [e for e in events if e.kind == "command"]
        assert [c.payload["status"] for c in commands] == ["rejected"] * 3
        assert rules.status()["actions_failed"] == 3
        assert driver.writes == []
