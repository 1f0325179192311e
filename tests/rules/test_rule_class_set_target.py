"""`set:` writes virtual points only: a point a driver registered is refused when the rule is
stored (API, validate, pack import, a pack of the site) and when it fires (a `{device}` target),
counted as a failed action. So no rule forges a meter's readings nor raises a device point's
class (which would withhold it from viewers and personal-capped consumers)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Event, Privacy, Reading
from edge.store.rows import row_to_record
from rules.actions import VIRTUAL_POINTS
from rules.store import RuleStore
from tests.support.site import running_site
from tests.support.waiting import until

SITE = """\
site: {id: set-target}
rules: {max_actions_per_minute: 600}
devices:
  - id: meter-1
    driver: sim
    points:
      - {name: power, signal: constant, value: 5, interval: 1h}
      - {name: energy_kwh, signal: constant, value: 49211, interval: 1h}
      - {name: voltage, signal: constant, value: 230, interval: 1h}
"""
BASE = "/api/v1/rules"


def _setter(rule_id: str, point: str, when: Any = "meter-1.power", expr: str = "1.0") -> dict[str, Any]:
    return {
        "id": rule_id,
        "when": when,
        "notify": "always",
        "then": [{"set": {"point": point, "expr": expr}}],
    }


async def test_a_set_of_a_device_point_is_refused_when_stored(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        comp = rt.components["rules"]
        headers = {"Authorization": f"Bearer {create_token(rt.state, 'integrator', ['read', 'rules'])}"}
        base = f"http://127.0.0.1:{rt.web_port}"

        async def call(method: str, path: str, **kw: Any) -> tuple[int, Any]:
            kw["headers"] = {**headers, **kw.get("headers", {})}
            async with session.request(method, base + path, **kw) as resp:
                return resp.status, await resp.json(content_type=None)

        forge = _setter("forge", "meter-1.energy_kwh")
        for path in (BASE, f"{BASE}/validate"):
            status, body = await call("POST", path, json=forge)
            assert status == 422, body
            (error,) = body["errors"]
            assert error["field"] == "then[0].set.point", error
            assert "meter-1.energy_kwh is a point of device meter-1" in error["message"], error
        status, body = await call("POST", BASE, json=_setter("site-total", "site.energy_kwh"))
        assert status == 201, body
        status, body = await call("PUT", f"{BASE}/site-total", json=_setter("site-total", "meter-1.voltage"))
        assert status == 422 and "meter-1.voltage" in body["detail"], body
        assert comp.store.get("site-total").version == 1

        pack = "rules:\n  - {id: p-ok, when: meter-1.power, then: [{set: {point: site.x, expr: '1'}}]}\n"
        pack += "  - {id: p-forge, when: meter-1.power, then: [{set: {point: meter-1.voltage, expr: '1'}}]}\n"
        status, body = await call(
            "POST", f"{BASE}/import", data=pack.encode(), headers={"Content-Type": "application/yaml"}
        )
        assert status == 422 and "meter-1.voltage is a point of device meter-1" in body["errors"][0], body
        assert comp.store.get("p-ok") is None and comp.store.get("p-forge") is None
        assert [s.id for s in comp.store.list_rules()] == ["site-total"]


async def test_a_set_of_a_device_point_is_refused_when_it_fires(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        events: list[Event] = []
        rt.hub.subscribe(lambda recs: events.extend(r for r in recs if isinstance(r, Event)))
        rules = rt.components["rules"]
        # the target is known only when it fires: `{device}` is the device of the trigger
        rules.put(_setter("forge", "{device}.energy_kwh"), "test", "create")
        # from health data: it would make the meter's voltage sensitive
        raising = _setter("raise", "{device}.voltage", when=[{"event": "blood_pressure"}], expr="999.0")
        rules.put(raising, "test", "create")
        rt.hub.ingest([Reading(time.time(), "meter-1.power", 6.0)])
        rt.hub.publish_event(
            Event("blood_pressure", "meter-1", payload={"systolic_mmhg": 151}, ts=time.time())
        )

        def refused() -> list[Event]:
            failed = [e for e in events if e.kind == "rule_action_failed"]
            return failed if len(failed) >= 2 else []

        failed = await until(refused, what="both refused sets")
        assert sorted(e.source for e in failed) == ["forge", "raise"]
        for e in failed:
            assert "is a point of device meter-1, read by its driver" in e.payload["error"], e
        assert rules.status()["actions_failed"] == 2
        assert rt.hub.points["meter-1.voltage"].privacy == Privacy.PUBLIC

        await rt.journal.flush()
        written = {(r[2], r[3]) for r in rt.journal.read_rows(0, 10_000)}
        assert ("meter-1.energy_kwh", 1.0) not in written and ("meter-1.voltage", 999.0) not in written


async def test_a_device_point_saved_as_rule_set_keeps_its_class_at_start(tmp_path: Path) -> None:
    """A state database from a version that let a rule set a device point (and raise its class)
    does not make that point sensitive again at the next start."""
    async with running_site(tmp_path, SITE, web=False) as rt:
        assert rt.state is not None
        saved = {"meter-1.voltage": ["float", "sensitive"], "site.total": ["float", "personal"]}
        RuleStore(rt.state).set_meta(VIRTUAL_POINTS, json.dumps(saved))

    async with running_site(tmp_path, SITE, web=False) as rt:
        assert rt.hub.points["meter-1.voltage"].privacy == Privacy.PUBLIC
        assert rt.hub.points["site.total"].privacy == Privacy.PERSONAL  # a virtual point keeps its class
        assert rt.components["rules"].actions.driver_point("meter-1.voltage") is not None


async def test_a_site_pack_that_sets_a_device_point_imports_nothing(tmp_path: Path) -> None:
    pack = tmp_path / "forge.yaml"
    pack.write_text(
        "rules:\n  - {id: p-ok, when: meter-1.power, then: [{set: {point: site.x, expr: '1'}}]}\n"
        "  - {id: p-forge, when: meter-1.power, then: [{set: {point: meter-1.voltage, expr: '1'}}]}\n",
        encoding="utf-8",
    )
    site = SITE.replace("rules: {max_actions_per_minute: 600}", f"rules: {{packs: [{pack}]}}")
    async with running_site(tmp_path, site, web=False) as rt:
        assert rt.components["rules"].store.list_rules() == []
        await rt.journal.flush()
        records = [row_to_record(r) for r in rt.journal.read_rows(0, 10_000)]
        (error,) = [r["payload"]["error"] for r in records if r.get("kind") == "rule_pack_error"]
        assert "meter-1.voltage is a point of device meter-1" in error, error
