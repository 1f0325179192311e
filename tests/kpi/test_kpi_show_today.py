"""`edge kpi show|export` read the files a gateway left: today's figures are the ones it stored,
not an empty day, whether the gateway still runs or has stopped."""

from __future__ import annotations

import json
from pathlib import Path

from edge.kpi.component import KpiComponent
from edge.runtime import Runtime
from tests.kpi.test_cli import SITE
from tests.support.cli import edge_cli
from tests.support.site import load, site_file
from tests.support.waiting import until


async def test_show_and_export_print_todays_stored_figures(tmp_path: Path) -> None:
    config = site_file(tmp_path, SITE)
    rt = Runtime(load(tmp_path, SITE), with_web=False)
    await rt.start()
    try:
        comp = rt.component(KpiComponent)
        assert comp is not None
        await until(lambda: rt.hub.received >= 10, what="readings of a")
        await rt.journal.flush()
        await comp.step()
        live = comp.today()
    finally:
        await rt.stop()
    assert live["devices"] and live["devices"][0]["observed_s"] > 0

    shown = edge_cli("kpi", "show", "--json", "-c", str(config))
    assert shown.returncode == 0, shown.stderr
    today = json.loads(shown.stdout)["days"][-1]
    assert today["day"] == live["day"] and not today["closed"]
    assert [d["id"] for d in today["devices"]] == ["a"]
    assert today["devices"][0]["observed_s"] >= live["devices"][0]["observed_s"]
    assert today["records"] >= live["records"] > 0

    exported = edge_cli("kpi", "export", "-c", str(config))
    assert exported.returncode == 0, exported.stderr
    assert any(line.startswith(f"{live['day']},a,") for line in exported.stdout.splitlines())
