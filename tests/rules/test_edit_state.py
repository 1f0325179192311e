"""Editing a rule through the HTTP API keeps its state when only presentation or actions change
(an active alert stays active, a pending `for:` fires at its original deadline with the new
message) and resets it, as before, when its logic changes; the version history says which."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Event, Reading
from tests.rules.test_api import Client
from tests.support.site import running_site
from tests.support.waiting import until

RULE: dict[str, Any] = {
    "id": "bin-full",
    "name": "Bin fulll",
    "when": "bin-*.fill_pct",
    "if": "value >= 85",
    "clear_if": "value < 60",
    "notify": "toggle",
    "then": [{"alert": "{rule_name}: {device} {value:.0f}%"}],
}


class Alerts:
    def __init__(self, rt: Any) -> None:
        self.events: list[Event] = []
        rt.hub.subscribe(lambda recs: self.events.extend(r for r in recs if isinstance(r, Event)))

    def of(self, state: str) -> list[Event]:
        return [e for e in self.events if e.kind == "alert" and e.payload["state"] == state]


async def _latest_version(tech: Client) -> dict[str, Any]:
    status, body = await tech.call("GET", "/bin-full/versions")
    assert status == 200, body
    return body["versions"][0]  # type: ignore[no-any-return]


async def test_renaming_keeps_an_active_alert_and_changing_if_resets_it(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        alerts, comp = Alerts(rt), rt.components["rules"]
        assert (await tech.call("POST", "", RULE))[0] == 201
        assert (await _latest_version(tech))["state"] == "new"
        rt.hub.ingest([Reading(time.time(), "bin-1.fill_pct", 90)])
        await until(lambda: alerts.of("fired"), what="the alert")

        status, body = await tech.call("PUT", "/bin-full", {**RULE, "name": "Bin full"})
        assert status == 200 and body["state"] == "active", body
        assert (await _latest_version(tech))["state"] == "kept"
        rt.hub.ingest([Reading(time.time(), "bin-1.fill_pct", 95)])  # still full: nothing new
        rt.hub.ingest([Reading(time.time(), "bin-1.fill_pct", 50)])  # emptied: clears
        cleared = await until(lambda: alerts.of("cleared"), what="the alert cleared")
        assert cleared[0].payload["message"].startswith("Bin full: bin-1 50%")  # the new name
        assert len(alerts.of("fired")) == 1 and comp.firings == 2  # fired once, cleared once

        # the condition changes: the state is reset, so an active alert is forgotten and fires again
        rt.hub.ingest([Reading(time.time(), "bin-1.fill_pct", 90)])
        await until(lambda: len(alerts.of("fired")) == 2, what="the second alert")
        status, body = await tech.call("PUT", "/bin-full", {**RULE, "name": "Bin full", "if": "value >= 80"})
        assert status == 200 and body["state"] == "ok", body
        assert (await _latest_version(tech))["state"] == "reset"
        rt.hub.ingest([Reading(time.time(), "bin-1.fill_pct", 90)])
        await until(lambda: len(alerts.of("fired")) == 3, what="the alert fired again after the reset")


async def test_a_pending_for_keeps_its_deadline_when_only_the_message_changes(tmp_path: Path) -> None:
    pending = {**RULE, "for": "2s"}
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        alerts, comp = Alerts(rt), rt.components["rules"]
        assert (await tech.call("POST", "", pending))[0] == 201
        t0 = time.time()
        rt.hub.ingest([Reading(t0, "bin-1.fill_pct", 90)])
        assert (await tech.call("GET", "/bin-full"))[1]["state"] == "pending"

        new_message = [{"alert": "{device} is full ({value:.0f}%)"}]
        status, body = await tech.call("PUT", "/bin-full", {**pending, "then": new_message})
        assert status == 200 and body["state"] == "pending", body
        assert (await _latest_version(tech))["state"] == "kept"
        fired = await until(lambda: alerts.of("fired"), what="the pending alert")
        assert comp.engine.rules["bin-full"].last_fired == t0 + 2  # the original deadline
        assert fired[0].ts == t0 + 2 and fired[0].payload["message"] == "bin-1 is full (90%)"

        # changing `if:` while pending forgets the timer: it starts again with the next reading
        rt.hub.ingest([Reading(time.time(), "bin-2.fill_pct", 90)])
        status, body = await tech.call("PUT", "/bin-full", {**pending, "if": "value >= 80"})
        assert status == 200 and body["state"] == "ok", body
        assert (await _latest_version(tech))["state"] == "reset"
        assert comp.engine.rules["bin-full"].states == {}
        t1 = time.time()
        rt.hub.ingest([Reading(t1, "bin-2.fill_pct", 90)])
        await until(lambda: len(alerts.of("fired")) == 2, what="the restarted timer")
        assert alerts.of("fired")[1].ts == t1 + 2
