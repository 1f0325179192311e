"""A rule whose every evaluation stays under the 50 ms limit but which is evaluated hundreds of times
a second must not keep the event loop: on a real gateway fed by a fast sim device, it is suspended
for using more than its share of wall-clock time, says so (event journaled, rule status, /metrics),
and a cheap rule on the same readings keeps running; saved again, it is evaluated again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Event, Reading
from tests.support.site import running_site
from tests.support.waiting import until, until_async

# each evaluation takes about a ms (far under the 50 ms per-evaluation limit, even on a loaded
# machine): the rule compiles, validates
# and, on a point that reports hundreds of times a second, would take the whole loop
HOG = " == ".join(["min('x'*9999)"] * 11) + " and value > 1000"
SITE = {
    "devices": [
        {
            "id": "fast",
            "driver": "sim",
            # ten points every 10 ms: 1,000 readings/s
            "points": [
                {"name": f"p{i}", "signal": "random", "min": 0, "max": 100, "interval": "10ms"}
                for i in range(10)
            ],
        }
    ]
}


class Api:
    def __init__(self, session: aiohttp.ClientSession, port: int, token: str) -> None:
        self.s, self.base, self.h = session, f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.s.request(method, self.base + path, json=body, headers=self.h) as resp:
            if resp.content_type.endswith("json"):
                return resp.status, await resp.json(content_type=None)
            return resp.status, await resp.text()

    async def rule(self, rule_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/api/v1/rules/{rule_id}")
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def metric(self, name: str, label: str) -> float:
        status, text = await self.call("GET", "/metrics")
        assert status == 200, text
        hit = re.search(rf"^{re.escape(name)}\{{[a-z]+=\"{re.escape(label)}\"\}} (\S+)$", text, re.M)
        assert hit, f"{name}{{{label}}} not in /metrics"
        return float(hit.group(1))


def suspensions(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind == "rule_error" and e.source == "hog"]


async def test_a_rule_taking_the_loop_with_cheap_evaluations_is_suspended_and_others_keep_running(
    tmp_path: Path,
) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        api = Api(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        events: list[Event] = []
        rt.hub.subscribe(lambda recs: events.extend(r for r in recs if isinstance(r, Event)))
        comp = rt.components["rules"]

        cheap = {"id": "cheap", "when": "fast.p0", "if": "value >= 0", "notify": "always"}
        assert (await api.call("POST", "/api/v1/rules", cheap))[0] == 201
        await until(lambda: comp.engine.rules["cheap"].last_fired, what="the cheap rule firing")
        status, body = await api.call("POST", "/api/v1/rules", {"id": "hog", "when": "fast.*", "if": HOG})
        assert status == 201 and body["state"] == "ok", body

        # suspended within seconds, for its share of the loop (not for one slow evaluation)
        first = (await until(lambda: suspensions(events), timeout=30, what="the hog suspended"))[0]
        message = first.payload["message"]
        assert first.payload["rule"] == "hog", first.payload
        assert "of the event loop" in message and "100 ms per second averaged over 5 s" in message, message
        assert "suspended until it is saved again" in message, message
        used = re.search(r"used (\d+) ms of the last ([\d.]+) s \((\d+)% of the event loop\)", message)
        assert used and int(used.group(3)) > 10, message  # more than its 10 %, and it says how much

        # the status says so: the rule, the engine's counters
        hog = await api.rule("hog")
        assert hog["state"] == "error" and hog["error"].endswith(message), hog
        assert await api.metric("edge_rules_status", "suspended") == 1
        assert await api.metric("edge_rules_count_total", "loop_share_suspensions") == 1
        assert comp.status()["suspended"] == 1 and comp.status()["loop_share_suspensions"] == 1

        # journaled: the events API reads it back from the journal
        async def journaled() -> list[Any]:
            _, body = await api.call("GET", "/api/v1/events?kind=rule_error&source=hog")
            return body["events"]  # type: ignore[no-any-return]

        rows: list[Any] = []

        async def check() -> bool:
            rows[:] = await journaled()
            return bool(rows)

        await until_async(check, what="the rule_error event in the journal")
        assert rows[0]["payload"]["message"] == message, rows[0]

        # the cheap rule keeps firing on new readings; the hog is no longer evaluated
        since = comp.engine.rules["cheap"].last_fired
        hog_rr = comp.engine.rules["hog"]
        await until(
            lambda: comp.engine.rules["cheap"].last_fired > since + 0.5, what="the cheap rule firing on"
        )
        assert "hog" in comp.engine.suspended and comp.engine.rules["hog"] is hog_rr
        assert (await api.rule("cheap"))["state"] != "error"
        assert len(suspensions(events)) == 1  # reported once

        # an operator re-enables it as for any suspended rule: it is evaluated again, with a fresh
        # budget, and is suspended again for the same reason
        assert (await api.call("POST", "/api/v1/rules/hog/disable"))[0] == 200
        assert (await api.call("POST", "/api/v1/rules/hog/enable"))[0] == 200
        assert "hog" not in comp.engine.suspended
        await until(lambda: len(suspensions(events)) == 2, timeout=30, what="the hog suspended again")
        assert "of the event loop" in suspensions(events)[1].payload["message"]
        assert await api.metric("edge_rules_count_total", "loop_share_suspensions") == 2
        assert await api.metric("edge_rules_status", "suspended") == 1


def test_the_loop_share_limits_the_live_engine_only_and_a_replay_runs_unlimited() -> None:
    from rules.engine import Engine
    from rules.model import parse_rule

    def run(loop_share: float | None) -> tuple[Engine, list[Any]]:
        e = Engine()
        e.loop_share, e.loop_window = loop_share, 0.5  # at most 50 ms in 0.5 s: ten evaluations
        e.add(parse_rule({"id": "hog", "when": "fast.*", "if": HOG}))
        errors: list[Any] = []
        for i in range(120):  # as fast as the CPU goes, about 0.15 s of evaluation in all
            errors += [f for f in e.process([Reading(1.75e9 + i, "fast.p0", 1.0)]) if f.kind == "error"]
        return e, errors

    live, errors = run(0.1)
    assert [f.rule.id for f in errors] == ["hog"] and "hog" in live.suspended
    assert "over the limit of 100 ms per second averaged over 0.5 s" in errors[0].error
    assert live.loop_share_suspensions == 1
    # a dry run or `edge rules test`: records replayed as fast as they can be, no share to keep
    replay, errors = run(None)
    assert not errors and not replay.suspended and replay.loop_share_suspensions == 0
