"""A rules pack is stored off the event loop and a rule saved re-routes only the points it matches:
a gateway keeps answering (here GET /healthz) and reading while a pack of a thousand rules is
imported on a site of a few hundred points, and saving one rule leaves the routes of the points
it does not match as they were."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from edge import audit
from edge.api.tokens import create_token
from edge.model import Reading
from rules.engine import Engine
from rules.model import compile_pack, parse_rule
from tests.rules.test_api import Client
from tests.support.site import running_site
from tests.support.waiting import until

POINTS = 300
RULES = 1000
PROBES = 3  # /healthz answers that must arrive while the pack is being stored


def _site() -> dict[str, Any]:
    return {
        "devices": [
            {
                "id": "big",
                "driver": "sim",
                "points": [
                    {"name": f"p{i}", "signal": "random", "min": 0, "max": 100, "interval": "1s"}
                    for i in range(POINTS)
                ],
            },
            {
                "id": "m1",
                "driver": "sim",
                "points": [{"name": "fast", "signal": "random", "min": 0, "max": 100, "interval": "50ms"}],
            },
        ]
    }


def _pack(prefix: str, count: int = RULES) -> str:
    """`count` ordinary rules on every `big` point, each over its own threshold above the readings'
    range: a reading of 1000.5 fires the first one only."""
    rules = [
        {
            "id": f"{prefix}{i}",
            "when": "big.p*",
            "if": f"value > {1000 + i}",
            "then": [{"alert": "{device} {value}"}],
        }
        for i in range(count)
    ]
    return yaml.safe_dump({"rules": rules}, sort_keys=False)


async def _store_pack(comp: Any, compiled: list[Any]) -> list[str]:
    """`store_pack` of the component, awaited (a version that stored on the event loop answered
    at once)."""
    ids = comp.store_pack(compiled, "tech")
    return list(await ids) if inspect.isawaitable(ids) else list(ids)


def _routed(engine: Engine, point: str) -> list[str]:
    """The rules a reading of `point` is evaluated by, in order."""
    fast, slow = engine._routing(point)[:2]
    return sorted([rr.id for _, _, rr in fast] + [rr.id for rr in slow])


async def _probed(probe: aiohttp.ClientSession, port: int, job: asyncio.Task[Any]) -> int:
    """/healthz asked again and again until `job` ends: how many answers arrived before it ended."""
    answered = 0
    while not job.done():
        async with probe.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200
        if not job.done():
            answered += 1
    return answered


async def test_a_pack_of_a_thousand_rules_is_stored_while_the_gateway_answers(tmp_path: Path) -> None:
    async with running_site(tmp_path, _site()) as rt, aiohttp.ClientSession() as probe:
        assert rt.state is not None
        comp = rt.components["rules"]
        await until(lambda: len(rt.hub.points) >= POINTS + 1, what="the sim points registered")
        async with probe.get(f"http://127.0.0.1:{rt.web_port}/healthz") as resp:
            assert resp.status == 200  # the probe's connection is open before the import

        # the storing alone (the pack compiled beforehand, as the API does in a thread)
        compiled = await asyncio.to_thread(compile_pack, _pack("r"), "<pack>")

        job = asyncio.create_task(_store_pack(comp, compiled))
        answered = await _probed(probe, rt.web_port, job)
        assert len(await job) == RULES
        assert answered >= PROBES, "the gateway did not answer /healthz while it stored the pack"

        # every rule stored is run and audited, and routed on the points it matches
        assert sum(1 for r in comp.engine.rules if r.startswith("r")) == RULES
        imports = audit.entries(rt.state, limit=2 * RULES, action="rule_import")
        assert len(imports) == RULES and {e["target"] for e in imports} == {f"r{i}" for i in range(RULES)}
        rt.hub.ingest([Reading(time.time(), "big.p7", 1000.5)])
        await until(lambda: comp.engine.rules["r0"].summary == "active", what="r0 fired")
        assert comp.engine.rules["r1"].summary == "ok"

        # the same through the API: the pack compiled in a thread, stored in a thread
        token = create_token(rt.state, "tech", ["read", "rules"])
        async with aiohttp.ClientSession() as session:
            tech = Client(session, rt.web_port, token)
            call = asyncio.create_task(tech.call("POST", "/import", data=_pack("s")))
            answered = await _probed(probe, rt.web_port, call)
            status, body = await call
        assert status == 200, body
        assert len(body["imported"]) == RULES
        assert answered >= PROBES, "the gateway did not answer /healthz while it imported the pack"
        assert len(comp.engine.rules) == 2 * RULES


async def test_saving_one_rule_rebuilds_only_the_routes_of_the_points_it_matches(tmp_path: Path) -> None:
    async with running_site(tmp_path, _site(), web=False) as rt:
        comp = rt.components["rules"]
        await until(lambda: len(rt.hub.points) >= POINTS + 1, what="the sim points registered")
        await _store_pack(comp, compile_pack(_pack("r", 50), "<pack>"))
        engine = comp.engine
        big = [p for p in rt.hub.points if p.startswith("big.")]
        before = {p: engine._routing(p) for p in big}

        comp.put({"id": "fast-high", "when": "m1.fast", "if": "value > 90"}, "tech", "create")
        assert all(engine._routing(p) is before[p] for p in big), "routes of points the rule does not match"
        assert _routed(engine, "m1.fast") == ["fast-high"]

        # a rule it matches leaves or joins the points' routes
        comp.set_enabled("r0", False, "tech")
        assert "r0" not in _routed(engine, "big.p3") and "r1" in _routed(engine, "big.p3")
        comp.set_enabled("r0", True, "tech")
        assert "r0" in _routed(engine, "big.p3")


def test_an_engine_rule_added_or_removed_drops_only_the_routes_it_matches() -> None:
    engine = Engine()
    for i in range(20):
        engine.add(parse_rule({"id": f"r{i}", "when": "big.p*", "if": f"value > {i}"}))
    engine.add(parse_rule({"id": "avg", "when": "other.x", "if": "avg('big.p1', '1m') > 5"}))
    points = [f"big.p{i}" for i in range(50)]
    before = {p: engine._routing(p) for p in [*points, "other.x"]}

    engine.add(parse_rule({"id": "other", "when": "other.*", "if": "value > 1"}))
    assert all(engine._routing(p) is before[p] for p in points)
    assert engine._routing("other.x") is not before["other.x"]
    assert _routed(engine, "other.x") == ["avg", "other"]

    engine.remove("r3")
    assert all("r3" not in _routed(engine, p) and "r4" in _routed(engine, p) for p in points)
    # a new window on a point is in that point's route (built before the rule came)
    assert len(engine._routing("big.p1")[4]) == 1 and not engine._routing("big.p9")[4]
    engine.add(parse_rule({"id": "w", "when": "other.x", "if": "max('big.p9', '5m') > 5"}))
    assert len(engine._routing("big.p9")[4]) == 1 and not engine._routing("big.p8")[4]
