"""`set:` writes no point of a device the site configures, even one its driver has not registered
yet (a BLE device's default map registers each point at the device's first packet): a rule saved
or imported before the device reports would otherwise claim the point as virtual, journal forged
readings under the device's id and raise the point's class before its driver gives it its own."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Event
from rules.actions import VIRTUAL_POINTS
from rules.store import RuleStore
from tests.support.site import running_site, site_file
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[2]
# the scale reports nothing yet: its weight point is not registered, only the device is configured
SITE = """\
site: {id: set-unreported}
rules: {max_actions_per_minute: 600}
devices:
  - id: scale-1
    driver: sim
    points:
      - {name: battery_pct, signal: constant, value: 80, interval: 1h}
"""
BASE = "/api/v1/rules"
UNREPORTED = "scale-1.weight_kg"


def _setter(rule_id: str, point: str, when: Any = "scale-1.battery_pct") -> dict[str, Any]:
    return {
        "id": rule_id,
        "when": when,
        "notify": "always",
        "then": [{"set": {"point": point, "expr": "1.0"}}],
    }


async def test_a_set_of_a_configured_devices_unregistered_point_is_refused(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None and UNREPORTED not in rt.hub.points
        comp = rt.components["rules"]
        headers = {"Authorization": f"Bearer {create_token(rt.state, 'integrator', ['read', 'rules'])}"}
        base = f"http://127.0.0.1:{rt.web_port}"
        for path in (BASE, f"{BASE}/validate"):
            async with session.post(base + path, json=_setter("forge", UNREPORTED), headers=headers) as resp:
                body = await resp.json()
                assert resp.status == 422, body
            (error,) = body["errors"]
            assert error["field"] == "then[0].set.point", error
            assert f"{UNREPORTED} is a point of device scale-1" in error["message"], error
        assert comp.store.get("forge") is None
        # a point of no configured device stays the rules' to set
        async with session.post(
            base + BASE, json=_setter("total", "site.weight_kg"), headers=headers
        ) as resp:
            assert resp.status == 201, await resp.text()


async def test_a_device_target_known_only_when_it_fires_is_refused_then(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        events: list[Event] = []
        rt.hub.subscribe(lambda recs: events.extend(r for r in recs if isinstance(r, Event)))
        rules = rt.components["rules"]
        rules.put(_setter("forge", "{device}.weight_kg", when=[{"event": "weighed"}]), "test", "create")
        rt.hub.publish_event(Event("weighed", "scale-1", payload={}, ts=time.time()))

        def failed() -> list[Event]:
            return [e for e in events if e.kind == "rule_action_failed"]

        (event,) = await until(failed, what="the refused set")
        assert f"{UNREPORTED} is a point of device scale-1" in event.payload["error"], event
        assert UNREPORTED not in rt.hub.points


async def test_a_saved_rule_set_point_of_a_configured_device_is_not_registered_at_start(
    tmp_path: Path,
) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        assert rt.state is not None
        saved = {UNREPORTED: ["float", "sensitive"], "site.total": ["float", "personal"]}
        RuleStore(rt.state).set_meta(VIRTUAL_POINTS, json.dumps(saved))

    async with running_site(tmp_path, SITE, web=False) as rt:
        assert UNREPORTED not in rt.hub.points  # left for its driver to register with its class
        assert "site.total" in rt.hub.points


def test_cli_import_refuses_a_set_of_a_configured_devices_unregistered_point(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(
        "rules:\n  - {id: p-forge, when: scale-1.battery_pct, then: [{set: {point: scale-1.weight_kg, expr: '1'}}]}\n",
        encoding="utf-8",
    )
    site = site_file(tmp_path, SITE)
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "rules", "import", "-c", str(site), str(pack)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stdout
    assert f"{UNREPORTED} is a point of device scale-1" in out.stderr, out.stderr
    assert "nothing was imported" in out.stderr
