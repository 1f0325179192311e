"""A point written by `set:` from health data stays sensitive across a restart: its earlier values
are in the journal, and a sink or pull consumer reading them after the restart must still find
them sensitive before the rule fires again."""

from __future__ import annotations

import time
from pathlib import Path

from edge.model import Event
from edge.store.records import IncludeConfig, RecordFilter
from tests.support.site import running_site
from tests.support.waiting import until

SITE = {"devices": [], "rules": {"max_actions_per_minute": 600}}
COPY = {
    "id": "copy-bp",
    "when": [{"event": "blood_pressure"}],
    "notify": "always",
    "then": [{"set": {"point": "health.last_bp", "expr": "payload['systolic_mmhg']"}}],
}


async def test_a_set_point_keeps_its_class_after_a_restart(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        rt.components["rules"].put(COPY, "test", "create")
        rt.hub.ingest([Event("blood_pressure", "kiosk-1", payload={"systolic_mmhg": 151}, ts=time.time())])
        await until(lambda: getattr(rt.hub.latest.get("health.last_bp"), "value", None) == 151)

    async with running_site(tmp_path, SITE, web=False) as rt:
        info = rt.hub.points["health.last_bp"]
        assert (info.privacy, info.type, info.device) == ("sensitive", "int", "health")
        rows = rt.journal.read_rows(0, 10_000)
        assert [r for r in rows if r[2] == "health.last_bp"], "the earlier value is in the journal"
        upstream = RecordFilter(IncludeConfig(), "personal", lambda: rt.hub.points).apply(rows)
        assert not [r for r in upstream if r[2] == "health.last_bp"]
