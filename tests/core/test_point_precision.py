"""A point's `precision` (or `decimals`): declared in the site file or by its profile, checked,
and served with the point's metadata (the pull API's /points and the UI's device view), so every
client rounds a value the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError, load_site
from tests.support.site import running_site, site_file
from tests.sync.test_pull_api import call

TOKEN = "prec-token-0123456789"


def meter(**point: object) -> dict[str, object]:
    return {
        "id": "meter",
        "driver": "modbus",
        "profile": "chint-dtsu666",
        "connection": {"transport": "tcp", "host": "127.0.0.1", "port": 1},
        "points": [{"name": "extra", "table": "holding", "address": 0, "type": "uint16", **point}],
    }


def test_the_profile_declares_precision_and_a_point_may_say_decimals(tmp_path: Path) -> None:
    site = load_site(site_file(tmp_path, {"devices": [meter(decimals=2)]}))
    infos = {i.name: i for i in site.devices[0].point_infos()}
    assert infos["voltage_a"].precision == 1
    assert infos["active_power"].precision == 1
    assert infos["energy_import"].precision == 2
    assert infos["extra"].precision == 2


@pytest.mark.parametrize("value", [11, -1, "two"])
def test_a_precision_out_of_range_is_refused_naming_the_point(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        load_site(site_file(tmp_path, {"devices": [meter(precision=value)]}))
    assert "precision" in str(err.value) and "points" in str(err.value)


async def test_the_pull_api_serves_each_points_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREC_TOKEN", TOKEN)
    doc = {"devices": [meter()], "consumers": [{"id": "city", "token_env": "PREC_TOKEN"}]}
    async with running_site(tmp_path, doc) as rt:
        status, body, _ = await call("GET", f"http://127.0.0.1:{rt.web_port}/api/v1/points", TOKEN)
    assert status == 200
    by_id = {p["id"]: p for p in body["points"]}
    assert by_id["meter.voltage_a"]["precision"] == 1
    assert by_id["meter.extra"]["precision"] is None
