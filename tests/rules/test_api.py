"""The rules HTTP API on a real aiohttp server, with API tokens."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from edge.api.tokens import create_token
from edge.model import Reading
from tests.support.site import running_site

RULE = {
    "id": "bin-full",
    "name": "垃圾桶满",
    "when": "bin-*.fill_pct",
    "if": "value >= 85",
    "clear_if": "value < 60",
    "notify": "toggle",
    "then": [{"alert": "{device} {value:.0f}%"}],
}


class Client:
    def __init__(self, session: aiohttp.ClientSession, port: int, token: str) -> None:
        self.s, self.base, self.h = (
            session,
            f"http://127.0.0.1:{port}/api/v1/rules",
            {"Authorization": f"Bearer {token}"},
        )

    async def call(
        self, method: str, path: str = "", body: Any = None, data: str | None = None
    ) -> tuple[int, Any]:
        async with self.s.request(method, self.base + path, json=body, data=data, headers=self.h) as resp:
            if resp.content_type.endswith("json"):
                return resp.status, await resp.json(content_type=None)
            return resp.status, await resp.text()


async def test_rules_api_crud_validate_versions_dry_run_and_scopes(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        viewer = Client(session, rt.web_port, create_token(rt.state, "viewer", ["read"]))

        status, body = await tech.call("POST", "", RULE)
        assert status == 201 and body["version"] == 1 and body["state"] == "ok"
        assert (await tech.call("POST", "", RULE))[0] == 409

        status, body = await tech.call("GET")
        assert [r["id"] for r in body["rules"]] == ["bin-full"]
        assert body["rules"][0]["rule"]["if"] == "value >= 85"

        # live: the stored rule is running
        rt.hub.ingest([Reading(time.time(), "bin-1.fill_pct", 90)])
        status, body = await tech.call("GET", "/bin-full")
        assert body["state"] == "active" and body["last_fired"] is not None

        # a bad update is refused with located errors and changes nothing
        status, body = await tech.call("PUT", "/bin-full", {**RULE, "if": "value >= 85 and __import__('os')"})
        assert status == 422
        assert body["errors"][0]["field"] == "if" and body["errors"][0]["column"] == 17
        assert (await tech.call("GET", "/bin-full"))[1]["version"] == 1

        status, body = await tech.call("PUT", "/bin-full", {**RULE, "if": "value >= 90"})
        assert status == 200 and body["version"] == 2
        assert (await tech.call("POST", "/bin-full/disable"))[1]["enabled"] is False
        assert (await tech.call("GET", "/bin-full"))[1]["state"] == "disabled"
        assert (await tech.call("POST", "/bin-full/enable"))[1]["enabled"] is True

        status, body = await tech.call("GET", "/bin-full/versions")
        versions = body["versions"]
        assert [v["version"] for v in versions] == [4, 3, 2, 1]
        assert versions[-1]["actor"] == "tech" and versions[-1]["rule"]["if"] == "value >= 85"
        status, body = await tech.call("POST", "/bin-full/versions/1/restore")
        assert status == 200 and body["rule"]["if"] == "value >= 85" and body["version"] == 5

        # validate
        status, body = await tech.call("POST", "/validate", RULE)  # warnings: this site has no bins
        assert status == 200 and body["ok"] is True
        status, body = await tech.call("POST", "/validate", {**RULE, "if": "value >"})
        assert (
            status == 422 and body["errors"][0]["field"] == "if" and "syntax" in body["errors"][0]["message"]
        )

        # read-only tokens can look but not change
        assert (await viewer.call("GET"))[0] == 200
        for method, path, body in [
            ("POST", "", {**RULE, "id": "x"}),
            ("PUT", "/bin-full", RULE),
            ("DELETE", "/bin-full", None),
            ("POST", "/bin-full/disable", None),
            ("POST", "/bin-full/versions/1/restore", None),
            ("POST", "/import", None),
        ]:
            assert (await viewer.call(method, path, body))[0] == 403, (method, path)
        async with session.get(tech.base) as resp:
            assert resp.status == 401

        # export / import round trip
        status, text = await tech.call("GET", "/export")
        pack = yaml.safe_load(text)
        assert pack["rules"][0]["id"] == "bin-full"
        pack["rules"][0]["id"] = "bin-full-copy"
        status, body = await tech.call("POST", "/import", data=yaml.safe_dump(pack, allow_unicode=True))
        assert status == 200 and body["imported"] == ["bin-full-copy"]
        status, body = await tech.call("POST", "/import", data="rules:\n  - {id: a, when: x.y, if: 'nope'}\n")
        assert status == 422 and "unknown name 'nope'" in body["errors"][0]
        assert "a" not in [r["id"] for r in (await tech.call("GET"))[1]["rules"]]

        assert (await tech.call("DELETE", "/bin-full"))[0] == 204
        assert (await tech.call("GET", "/bin-full"))[0] == 404
        assert "bin-full" not in rt.components["rules"].engine.rules

        from edge import audit

        actions = {e["action"] for e in audit.entries(rt.state)}
        assert {"rule_create", "rule_update", "rule_disable", "rule_restore", "rule_delete"} <= actions


async def test_dry_run_over_the_journal_reports_firings_without_acting(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        now = time.time()
        values = [50, 90, 91, 92, 70, 50, 95]
        rt.hub.ingest([Reading(now - 3600 + i * 60, "bin-1.fill_pct", v) for i, v in enumerate(values)])
        rt.hub.ingest([Reading(now - 7 * 3600, "bin-1.fill_pct", 99)])  # outside the 6 h window
        status, body = await tech.call("POST", "/dry-run", {"rule": {**RULE, "for": "90s"}, "hours": 6})
        assert status == 200, body
        kinds = [(f["kind"], round(f["ts"] - (now - 3600))) for f in body["firings"]]
        # >= 85 from 60 s on, held 90 s -> fired at 150 s (by the timer, between readings);
        # below 60 at 300 s -> cleared; 95 at 360 s, held to the end -> fired at 450 s
        assert kinds == [("fired", 150), ("cleared", 300), ("fired", 450)]
        assert body["firings"][0]["message"].startswith("bin-1")
        assert body["evaluated"] >= 7
        assert not [e for e in rt.journal.tail(50) if e.get("kind") == "alert"]  # no action ran
        status, body = await tech.call("POST", "/dry-run", {"rule": {**RULE, "if": "bad"}, "hours": 6})
        assert status == 422
        status, body = await tech.call("POST", "/dry-run", {"rule": RULE, "hours": 100000})
        assert status == 422


async def test_dry_run_windows_hold_the_readings_before_the_range(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        now = time.time()
        start = now - 1800  # the range of a half-hour dry run
        rt.hub.ingest([Reading(start - 600 + i * 60, "bin-1.fill_pct", 100) for i in range(9)])
        rt.hub.ingest([Reading(start + 30 + i * 60, "bin-1.fill_pct", 10) for i in range(5)])
        rule = {**RULE, "id": "emptied", "if": "avg(point, '10m') > 50 and value < 20", "clear_if": None}
        del rule["clear_if"]
        status, body = await tech.call("POST", "/dry-run", {"rule": rule, "hours": 0.5})
        assert status == 200, body
        # the first low reading in the range is judged with the nine high ones before it
        assert [(f["kind"], round(f["ts"] - start)) for f in body["firings"]][:1] == [("fired", 30)]
        assert body["evaluated"] == 5 and body["prefill"]["samples"] == 9


async def test_a_notify_always_rule_shows_when_it_last_fired_across_a_restart(tmp_path: Path) -> None:
    """`notify: always` keeps no state per key, yet the rules list says when it last fired, and
    still does after the gateway restarts."""
    rule = {**RULE, "id": "bin-report", "notify": "always"}
    del rule["clear_if"]
    fired = time.time()
    for run in range(2):
        async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
            assert rt.state is not None
            tech = Client(session, rt.web_port, create_token(rt.state, f"tech{run}", ["read", "rules"]))
            if run == 0:
                assert (await tech.call("POST", "", rule))[0] == 201
                assert (await tech.call("GET", "/bin-report"))[1]["last_fired"] is None
                rt.hub.ingest([Reading(fired, "bin-1.fill_pct", 90)])
            status, body = await tech.call("GET", "/bin-report")
            assert status == 200 and body["last_fired"] == fired, (run, body)
