"""A sink URL carrying USER:PASSWORD@ is a secret in the site file: `edge check` warns of it (a
site file of an earlier release that has one keeps working), naming the key and the sink type's
credential references, never repeating the password, and `edge run` logs the same; the receiver
gets them as its credentials, and the sync status never shows them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.sync.helpers import sink

PASSWORD = "UrlPassword789"


def check(tmp_path: Path, upstream: dict[str, Any]) -> tuple[int, str]:
    done = edge_cli("check", "-c", str(site_file(tmp_path, {"upstream": [upstream]})))
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("upstream", "hint"),
    [
        (sink(f"http://opsuser:{PASSWORD}@127.0.0.1:18499/ingest"), "Authorization: Bearer"),
        (sink(f"https://:{PASSWORD}@central.example.org/ingest"), "Authorization: Bearer"),
        (sink("http://opsuser@127.0.0.1:18499/ingest"), "Authorization: Bearer"),
        (
            {
                "id": "tsdb",
                "type": "influxdb",
                "url": f"http://admin:{PASSWORD}@127.0.0.1:8086",
                "database": "community",
            },
            "USER:PASSWORD for InfluxDB 1.x",
        ),
    ],
)
def test_edge_check_warns_of_a_url_with_credentials(
    tmp_path: Path, upstream: dict[str, Any], hint: str
) -> None:
    code, out = check(tmp_path, upstream)
    assert code == 0, out
    assert "url: warning: url carries a user name or password" in out, out
    assert "token_env" in out and "token_file" in out and hint in out, out
    assert PASSWORD not in out and "opsuser" not in out, out


def test_edge_check_takes_a_url_without_credentials(tmp_path: Path) -> None:
    code, out = check(tmp_path, sink("http://127.0.0.1:18499/ingest?team=a@b"))
    assert code == 0, out
    assert "warning" not in out, out


async def test_the_status_never_shows_credentials_of_a_url(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"upstream": [sink("http://127.0.0.1:9/ingest")]}, web=False) as rt:
        comp = rt.components["sync"]
        s = comp.sinks["central"]
        # as if one had got past the check: the status every read-scope caller sees leaves it out
        s.cfg = s.cfg.model_copy(update={"url": f"http://opsuser:{PASSWORD}@127.0.0.1:9/ingest"})
        status = comp.status()
    shown = status["sinks"][0]["url"]
    assert shown == "http://127.0.0.1:9/ingest", shown
    assert PASSWORD not in str(status) and "opsuser" not in str(status)


async def test_a_url_with_credentials_still_reaches_its_receiver_as_basic_auth(tmp_path: Path) -> None:
    """An earlier release's site file with USER:PASSWORD@ keeps delivering after the upgrade: the
    receiver gets them as HTTP Basic credentials."""
    import base64

    from aiohttp import web

    from tests.support.ports import free_port
    from tests.support.waiting import until

    seen: list[str] = []

    async def ingest(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/ingest", ingest)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        doc = {
            "upstream": [sink(f"http://opsuser:{PASSWORD}@127.0.0.1:{port}/ingest")],
            "devices": [
                {
                    "id": "meter",
                    "driver": "sim",
                    "points": [{"name": "kw", "signal": "random", "min": 0, "max": 9, "interval": "100ms"}],
                }
            ],
        }
        async with running_site(tmp_path, doc, web=False):
            await until(lambda: len(seen) > 0, what="a batch at the receiver")
        expected = "Basic " + base64.b64encode(f"opsuser:{PASSWORD}".encode()).decode()
        assert seen[0] == expected
    finally:
        await runner.cleanup()
