"""A reload of the site file (SIGHUP) changes the devices the KPIs follow: a device removed has
no figures from then on, a device added has them from its first record, without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.kpi.component import KpiComponent
from edge.runtime import Runtime
from edge.service import reload
from tests.support.site import load, site_file
from tests.support.waiting import until


def device(dev_id: str) -> dict[str, Any]:
    return {"id": dev_id, "driver": "sim", "points": [{"name": "p", "signal": "random", "interval": "20ms"}]}


def doc(*devices: str) -> dict[str, Any]:
    return {
        "site": {"id": "kpi-reload", "name": "KPI", "timezone": "Asia/Shanghai"},
        "storage": {"flush_interval": 0.01},
        "kpi": {"interval": "1h"},
        "devices": [device(d) for d in devices],
    }


async def test_a_reload_drops_a_removed_device_and_follows_an_added_one(tmp_path: Path) -> None:
    rt = Runtime(load(tmp_path, doc("x", "y")), with_web=False)
    await rt.start()
    try:
        comp = rt.component(KpiComponent)
        assert comp is not None

        async def observed() -> dict[str, dict[str, Any]]:
            await rt.journal.flush()
            await comp.step()
            return {d["id"]: d for d in comp.today()["devices"]}

        await until(lambda: rt.hub.received >= 20, what="readings of x and y")
        assert set(await observed()) == {"x", "y"}

        path = site_file(tmp_path, doc("x", "z"))
        assert await reload(rt, str(path)) == []
        await until(lambda: "z.p" in rt.hub.points, what="z running")
        received = rt.hub.received
        await until(lambda: rt.hub.received >= received + 20, what="readings after the reload")
        after = await observed()
        assert set(after) == {"x", "z"}  # y, gone from the site file, is neither shown nor judged
        assert after["z"]["observed_s"] > 0 and after["z"]["completeness"] is not None
        today = comp.today()
        assert all(b["device"] != "y" for b in today["below_target"])
        assert today["site"]["devices"] == 2  # y observed earlier today is no longer counted
        assert "y" not in comp.fold.state["dev"]  # and no longer followed
    finally:
        await rt.stop()
