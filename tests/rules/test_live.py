"""The engine inside a real Runtime: the barrier end to end through the sim driver, and actions
(webhook with retries, virtual points, rate limits, failures, isolation of slow actions)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from edge.model import Event, Reading
from tests.support.servers import serving
from tests.support.site import running_site
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[2]


class Collector:
    def __init__(self, rt: Any) -> None:
        self.events: list[Event] = []
        rt.hub.subscribe(lambda recs: self.events.extend(r for r in recs if isinstance(r, Event)))

    def kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


@contextlib.asynccontextmanager
async def _watching(tmp_path: Path, doc: dict[str, Any]) -> AsyncIterator[tuple[Any, Collector]]:
    """The running site (no web server) and a Collector of the events its hub publishes."""
    async with running_site(tmp_path, doc, web=False) as rt:
        yield rt, Collector(rt)


async def test_loop_sensor_opens_the_sim_barrier_end_to_end(tmp_path: Path) -> None:
    site = {
        "devices": [
            {
                "id": "gate-north",
                "driver": "sim",
                "points": [
                    {
                        "name": "loop_occupied",
                        "type": "bool",
                        "signal": "toggle",
                        "period": "1s",
                        "interval": "50ms",
                    },
                    {
                        "name": "barrier_open",
                        "type": "bool",
                        "signal": "constant",
                        "value": False,
                        "writable": True,
                    },
                ],
            }
        ],
        "rules": {"packs": [str(ROOT / "deploy/rules/parking.yaml")]},
    }
    async with _watching(tmp_path, site) as (rt, events):
        comp = rt.components["rules"]
        assert "gate-open-on-loop" in comp.engine.rules
        driver = await until(lambda: rt.slots["gate-north"].driver, what="sim driver")
        await until(lambda: ("barrier_open", True) in driver.writes, timeout=10, what="barrier write")
        cmd = await until(
            lambda: [e for e in events.kind("command") if e.payload["by"] == "rule:gate-open-on-loop"],
            what="command event",
        )
        assert cmd[0].payload["status"] == "ok"
        # the device echoes the write through its queue: the echo reaches the hub after the command event
        await until(
            lambda: getattr(rt.hub.latest.get("gate-north.barrier_open"), "value", None) is True,
            what="the device's echo",
        )
        assert comp.actions.write_latency_ms, "latency of reading -> write was measured"
        assert comp.status()["actions_executed"] >= 2  # the write and the gate_opened event
        assert events.kind("gate_opened")[0].payload["message"].startswith("gate-north")


def _rules_site(**rules: Any) -> dict[str, Any]:
    return {"devices": [], "rules": rules or {"max_actions_per_minute": 600}}


# webhooks reach only what the site allows; a receiver on loopback must be named by address
WEBHOOK_SITE = _rules_site(max_actions_per_minute=600, webhook_allow=["127.0.0.1"])


async def _put(rt: Any, doc: dict[str, Any]) -> None:
    rt.components["rules"].put(doc, "test", "create")


async def test_webhook_retries_until_delivered_and_slow_action_never_delays_another_rule(
    tmp_path: Path,
) -> None:
    hits: list[dict[str, Any]] = []
    release = asyncio.Event()

    async def flaky(request: web.Request) -> web.Response:
        hits.append(await request.json())
        return web.Response(status=500 if len(hits) < 3 else 200)

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=200)

    async with serving({"/flaky": flaky, "/slow": slow}) as port:
        async with _watching(tmp_path, WEBHOOK_SITE) as (rt, events):
            await _put(
                rt,
                {
                    "id": "hook",
                    "when": "d.x",
                    "if": "value > 5",
                    "then": [{"webhook": {"url": f"http://127.0.0.1:{port}/flaky", "retries": 3}}],
                },
            )
            await _put(
                rt,
                {
                    "id": "slow",
                    "when": "d.y",
                    "if": "value > 5",
                    "then": [
                        {"webhook": {"url": f"http://127.0.0.1:{port}/slow", "timeout": "30s"}},
                        {"alert": "slow rule done"},
                    ],
                },
            )
            await _put(
                rt, {"id": "fast", "when": "d.y", "if": "value > 5", "then": [{"alert": "fast {value}"}]}
            )
            now = time.time()
            rt.hub.ingest([Reading(now, "d.x", 9), Reading(now, "d.y", 9)])
            # the fast rule's alert arrives while the slow rule's webhook is still hanging
            alerts = await until(lambda: events.kind("alert"), what="fast alert")
            assert [a.source for a in alerts] == ["fast"]
            assert not release.is_set()
            await until(lambda: len(hits) == 3, what="three webhook attempts")
            assert hits[-1]["rule"] == "hook" and hits[-1]["state"] == "fired" and hits[-1]["value"] == 9
            release.set()
            await until(lambda: len(events.kind("alert")) == 2, what="slow rule finishes")
            assert not events.kind("rule_action_failed")


async def test_failed_action_is_counted_and_journaled(tmp_path: Path) -> None:
    async with _watching(tmp_path, WEBHOOK_SITE) as (rt, events):
        await _put(
            rt,
            {
                "id": "w",
                "when": "d.x",
                "then": [
                    {"write": {"point": "nowhere.x", "value": 1}},
                    {"webhook": {"url": "http://127.0.0.1:9/", "retries": 0}},
                ],
            },
        )
        rt.hub.ingest([Reading(time.time(), "d.x", 1)])
        failed = await until(
            lambda: len(events.kind("rule_action_failed")) == 2 and events.kind("rule_action_failed")
        )
        assert "unknown point" in failed[0].payload["error"]
        assert events.kind("command")[0].payload["status"] == "rejected"
        assert rt.components["rules"].status()["actions_failed"] == 2


async def test_set_writes_a_virtual_point_from_an_expression(tmp_path: Path) -> None:
    async with running_site(tmp_path, _rules_site(), web=False) as rt:
        await _put(
            rt,
            {
                "id": "total",
                "when": "meter-*.power_kw",
                "notify": "always",
                "then": [
                    {
                        "set": {
                            "point": "site.total_power_kw",
                            "expr": "(p('meter-1.power_kw') or 0) + (p('meter-2.power_kw') or 0)",
                        }
                    }
                ],
            },
        )
        now = time.time()
        rt.hub.ingest([Reading(now, "meter-1.power_kw", 2.5)])
        rt.hub.ingest([Reading(now + 1, "meter-2.power_kw", 4.0)])
        await until(lambda: getattr(rt.hub.latest.get("site.total_power_kw"), "value", None) == 6.5)
        assert rt.hub.points["site.total_power_kw"].device == "site"


async def test_rate_limit_drops_counts_and_reports_once(tmp_path: Path) -> None:
    async with _watching(tmp_path, _rules_site(max_actions_per_minute=2)) as (rt, events):
        await _put(rt, {"id": "chatty", "when": "d.x", "notify": "always", "then": [{"alert": "{value}"}]})
        now = time.time()
        for i in range(5):
            rt.hub.ingest([Reading(now + i, "d.x", i)])
        await until(lambda: len(events.kind("alert")) == 2)
        limited = events.kind("rule_rate_limited")
        assert len(limited) == 1 and limited[0].payload["limit_per_minute"] == 2
        assert rt.components["rules"].status()["rate_limited"] == 3


async def test_toggle_sends_a_cleared_alert_and_else_actions_run(tmp_path: Path) -> None:
    async with _watching(tmp_path, _rules_site()) as (rt, events):
        await _put(
            rt,
            {
                "id": "t",
                "when": "d.x",
                "if": "value > 5",
                "notify": "toggle",
                "severity": "critical",
                "then": [{"alert": "high {value}"}],
                "else": [{"event": {"kind": "back_to_normal", "message": "ok {value}"}}],
            },
        )
        now = time.time()
        rt.hub.ingest([Reading(now, "d.x", 9)])
        rt.hub.ingest([Reading(now + 1, "d.x", 1)])
        await until(lambda: len(events.kind("alert")) == 2 and events.kind("back_to_normal"))
        fired, cleared = events.kind("alert")
        assert (fired.payload["state"], fired.severity, fired.payload["message"]) == (
            "fired",
            "critical",
            "high 9",
        )
        assert cleared.payload["state"] == "cleared" and cleared.payload["message"] == "high 1 (cleared)"
        assert fired.payload["point"] == "d.x" and fired.source == "t"


async def test_evaluation_error_publishes_rule_error_and_engine_keeps_going(tmp_path: Path) -> None:
    async with _watching(tmp_path, _rules_site()) as (rt, events):
        await _put(rt, {"id": "bad", "when": "d.x", "if": "value / 0 > 1"})
        await _put(rt, {"id": "good", "when": "d.x", "if": "value > 1", "then": [{"alert": "ok"}]})
        rt.hub.ingest([Reading(time.time(), "d.x", 5)])
        await until(lambda: events.kind("rule_error") and events.kind("alert"))
        assert "ZeroDivisionError" in events.kind("rule_error")[0].payload["message"]
        assert rt.components["rules"].engine.rules["bad"].summary == "error"


async def test_packs_relative_to_the_site_file_are_imported_on_first_start_only(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "p.yaml").write_text("rules:\n  - {id: a, when: d.x, if: value > 1}\n")
    site = {"devices": [], "rules": {"packs": ["rules/p.yaml", "rules/missing.yaml"]}}
    async with running_site(tmp_path, site, web=False) as rt:
        comp = rt.components["rules"]
        assert comp.store.get("a").version == 1
        comp.delete("a", "tech")  # a technician removed it; a restart must not bring it back
        await rt.journal.flush()
        errors = [r for r in rt.journal.tail(100) if r.get("kind") == "rule_pack_error"]
        assert len(errors) == 1 and "missing.yaml" in errors[0]["payload"]["error"]
    async with running_site(tmp_path, site, web=False) as rt:
        assert rt.components["rules"].store.get("a") is None
