"""`edge rules import` on a site whose gateway runs: the gateway runs what was imported, without a
restart, and the API never shows a version other than the one in force — the rule page showed the
imported version while the engine kept firing the one before for good."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Event, Reading
from tests.support.site import running_site
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[2]
SITE = """\
site: {id: import-running}
devices:
  - id: m
    driver: sim
    points:
      - {name: v, signal: constant, value: 0, interval: 1h}
"""


def _rule(name: str, above: int) -> str:
    return (
        f"  - {{id: ramp-high, name: {name}, when: m.v, if: value > {above}, notify: always, "
        f'then: [{{alert: "{name} fired at {{value:.0f}}"}}]}}\n'
    )


def _import(site: Path, pack: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "rules", "import", "-c", str(site), str(pack)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_cli_import_runs_on_the_running_gateway_and_the_api_shows_what_runs(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        comp = rt.components["rules"]
        alerts: list[str] = []
        rt.hub.subscribe(
            lambda recs: alerts.extend(
                str(r.payload.get("message")) for r in recs if isinstance(r, Event) and r.kind == "alert"
            )
        )
        headers = {"Authorization": f"Bearer {create_token(rt.state, 'reader', ['read'])}"}
        base = f"http://127.0.0.1:{rt.web_port}/api/v1/rules"

        async def get(path: str) -> Any:
            async with session.get(base + path, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        pack = tmp_path / "v1.yaml"
        pack.write_text("rules:\n" + _rule("v1", 50), encoding="utf-8")
        out = _import(Path(rt.site.source), pack)
        assert out.returncode == 0, out.stderr
        assert "a running gateway of this site runs them" in out.stdout

        # a rule new to the gateway: shown as in force, and in force
        shown = await get("/ramp-high")
        assert (shown["version"], shown["name"], shown["state"]) == (1, "v1", "ok"), shown
        rt.hub.ingest([Reading(time.time(), "m.v", 60.0)])
        await until(lambda: "v1 fired at 60" in alerts, what="the imported v1 firing")

        pack.write_text("rules:\n" + _rule("v2", 99), encoding="utf-8")
        out = _import(Path(rt.site.source), pack)
        assert out.returncode == 0, out.stderr
        listed = {r["id"]: r for r in (await get(""))["rules"]}
        assert (listed["ramp-high"]["version"], listed["ramp-high"]["name"]) == (2, "v2"), listed
        assert comp.engine.rules["ramp-high"].rule.name == "v2"  # what the list shows is what runs

        alerts.clear()
        rt.hub.ingest([Reading(time.time(), "m.v", 70.0)])  # v1 fired at this, v2 does not
        rt.hub.ingest([Reading(time.time(), "m.v", 100.0)])
        await until(lambda: "v2 fired at 100" in alerts, what="the imported v2 firing")
        assert alerts == ["v2 fired at 100"], alerts


async def test_the_running_gateway_loads_an_import_when_nobody_asks_the_api(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        comp.put(
            {"id": "ramp-high", "name": "v1", "when": "m.v", "if": "value > 50", "then": [{"alert": "x"}]},
            "test",
            "create",
        )
        pack = tmp_path / "v2.yaml"
        pack.write_text("rules:\n" + _rule("v2", 99), encoding="utf-8")
        out = _import(Path(rt.site.source), pack)
        assert out.returncode == 0, out.stderr

        await until(lambda: comp.engine.rules["ramp-high"].rule.name == "v2", what="v2 loaded by the gateway")
        assert comp.store.get("ramp-high").version == 2
        assert comp.reloaded == 1
