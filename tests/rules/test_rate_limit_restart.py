"""A rule's action budget (max_actions_per_minute) survives a restart: a gateway that restarts, or
crashes in a loop, does not hand its rules a fresh minute's worth of writes and webhooks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge.model import Reading
from tests.support.site import running_site
from tests.support.waiting import until

SITE = (
    "devices:\n  - {id: bin, driver: sim, points: [{name: fill, signal: constant, value: 0, interval: 1h}]}\n"
    "rules: {max_actions_per_minute: 2}\n"
)
RULE = {
    "id": "chatty",
    "when": [{"point": "bin.fill"}],
    "if": "value > 50",
    "notify": "always",
    "then": [{"alert": "fill {value}"}],
}


def alerts(seen: list[Any]) -> list[Any]:
    return [r for r in seen if getattr(r, "kind", None) == "alert"]


async def test_the_action_budget_is_not_refilled_by_a_restart(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        comp.put(RULE, "test", "create")
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        for value in (60, 70, 80):
            rt.hub.ingest([Reading(time.time(), "bin.fill", value)])
        await until(lambda: comp.actions.rate_limited.get("chatty") == 1, what="the third firing limited")
        await until(lambda: len(alerts(seen)) == 2, what="two alerts")
        # written within moments of the firing, not only at a clean stop (a crash keeps it too)
        await until(
            lambda: json.loads(comp.store.meta("rate_limits") or "{}").get("chatty", [9])[0] < 1,
            what="the spent budget persisted",
        )

    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        seen = []
        rt.hub.subscribe(seen.extend)
        rt.hub.ingest([Reading(time.time(), "bin.fill", 90)])
        await until(
            lambda: comp.actions.rate_limited.get("chatty") == 1, what="still limited after the restart"
        )
        assert alerts(seen) == []
