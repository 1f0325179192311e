"""A rule's `max_actions_per_minute` edited on a running gateway applies from its next firing (the
firings of the last minute count against the new limit), and a deleted rule's budget goes with it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge.model import Event, Reading
from tests.support.site import running_site
from tests.support.waiting import until

SITE = (
    "devices:\n  - {id: d, driver: sim, points: [{name: dummy, signal: constant, value: 1, interval: 1h}]}\n"
)


def rule(per_minute: int) -> dict[str, Any]:
    return {
        "id": "r",
        "when": "d.x",
        "if": "value > 0",
        "notify": "always",
        "max_actions_per_minute": per_minute,
        "then": [{"event": {"kind": "hit", "message": "{value}"}}],
    }


class Seen:
    def __init__(self, rt: Any) -> None:
        self.events: list[Event] = []
        rt.hub.subscribe(lambda recs: self.events.extend(r for r in recs if isinstance(r, Event)))

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)

    def last(self, kind: str) -> Event:
        return [e for e in self.events if e.kind == kind][-1]


def fire(rt: Any, n: int) -> None:
    now = time.time()
    rt.hub.ingest([Reading(now + i * 0.001, "d.x", i + 1) for i in range(n)])


async def test_raising_the_limit_lets_the_rule_act_again_at_once(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        seen = Seen(rt)
        comp.put(rule(2), "test", "create")
        fire(rt, 3)
        await until(lambda: seen.count("rule_rate_limited") == 1, what="the third firing limited")
        await until(lambda: seen.count("hit") == 2, what="two hits")

        stored = comp.put(rule(60), "test", "update")
        assert comp.store.versions("r")[0]["state"] == "kept"  # an edit that keeps the rule's state
        assert stored.version == 2
        fire(rt, 10)
        # 2 of the new 60 are spent already: the 10 firings all act
        await until(lambda: seen.count("hit") == 12, what="ten more hits after raising the limit")
        assert comp.actions.rate_limited["r"] == 1
        assert seen.count("rule_rate_limited") == 1


async def test_lowering_the_limit_stops_a_runaway_rule_at_once(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        seen = Seen(rt)
        comp.put(rule(60), "test", "create")
        fire(rt, 3)
        await until(lambda: seen.count("hit") == 3, what="three hits")

        comp.put(rule(2), "test", "update")
        fire(rt, 10)
        # 3 firings in the last minute are more than the new 2: nothing more acts
        await until(lambda: comp.actions.rate_limited.get("r") == 10, what="ten firings limited")
        await until(lambda: seen.count("rule_rate_limited") == 1, what="the limiting reported")
        assert seen.last("rule_rate_limited").payload["limit_per_minute"] == 2
        assert seen.count("hit") == 3


async def test_a_rule_created_again_after_a_delete_starts_with_a_full_budget(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        seen = Seen(rt)
        comp.put(rule(2), "test", "create")
        fire(rt, 3)
        await until(lambda: comp.actions.rate_limited.get("r") == 1, what="the third firing limited")
        await until(lambda: seen.count("hit") == 2, what="two hits")

        assert comp.delete("r", "test")
        comp.put(rule(2), "test", "create")
        fire(rt, 2)
        await until(lambda: seen.count("hit") == 4, what="two hits of the new rule")
        assert comp.actions.rate_limited["r"] == 1  # what was dropped before stays counted


async def test_a_deleted_rule_leaves_no_saved_budget(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        comp.put(rule(2), "test", "create")
        fire(rt, 3)
        await until(
            lambda: "r" in json.loads(comp.store.meta("rate_limits") or "{}"), what="the budget persisted"
        )
        assert comp.delete("r", "test")

    async with running_site(tmp_path, SITE, web=False) as rt:
        assert "r" not in json.loads(rt.components["rules"].store.meta("rate_limits") or "{}")
