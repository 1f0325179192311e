"""The commissioning test-read comes with the Modbus plugin: its manifest's `routes` hook serves
`POST /api/v1/commission/read` (and its `openapi` hook describes it). A site whose installation
lacks the Modbus plugin serves no such route, and the UI serves as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp

from edge.api import openapi
from tests.support.site import running_site
from tests.sync.test_openapi_plugins import registry  # noqa: F401  (the fixture)

SITE = {
    "devices": [
        {"id": "bin-1", "driver": "sim", "points": [{"name": "fill_pct", "signal": "constant", "value": 4}]}
    ]
}
READ = "/api/v1/commission/read"


async def status_of(base: str, method: str, path: str) -> int:
    async with aiohttp.ClientSession() as http, http.request(method, base + path, allow_redirects=False) as r:
        return r.status


async def test_the_modbus_plugin_serves_the_commissioning_read(
    tmp_path: Path,
    registry: Callable[..., None],  # noqa: F811
) -> None:
    registry()  # the discovered plugins, Modbus among them
    async with running_site(tmp_path, SITE) as rt:
        base = f"http://127.0.0.1:{rt.web_port}"
        # the route is there: without a credential it is refused, not unknown
        assert await status_of(base, "POST", READ) == 401
    assert READ in openapi.document()["paths"]


async def test_without_the_modbus_plugin_the_route_is_gone_and_the_ui_serves(
    tmp_path: Path,
    registry: Callable[..., None],  # noqa: F811
) -> None:
    registry(drop=("modbus",))
    async with running_site(tmp_path, SITE) as rt:
        base = f"http://127.0.0.1:{rt.web_port}"
        assert await status_of(base, "POST", READ) == 404
        # the UI serves its pages: the first run's setup page, and a page that sends a visitor there
        assert await status_of(base, "GET", "/setup") == 200
        assert await status_of(base, "GET", "/devices") == 302
        assert await status_of(base, "GET", "/static/index.html") == 200
    assert READ not in openapi.document()["paths"]
