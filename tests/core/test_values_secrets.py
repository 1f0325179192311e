"""A secret from the environment is stripped of its surrounding whitespace as one from a file is
(`CENTRAL_TOKEN="$(cat secret)"`, a Kubernetes or Docker secret ends in a newline), so the sink
sends `Bearer TOKEN`, not a header aiohttp refuses; a control character left inside a secret is
refused by `edge check`, located at its key, without showing the secret."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.cli import edge_cli
from tests.support.servers import serving
from tests.support.site import running_site, site_file
from tests.support.waiting import until

TOKEN = "a-sink-token-0123456789"


async def test_a_token_from_the_environment_loses_its_trailing_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_TEST_CENTRAL_TOKEN", f"  {TOKEN}\n")
    seen: list[str | None] = []

    async def ingest(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        await request.read()
        return web.Response(status=204)

    async with serving({"/ingest": ingest}) as port:
        doc = {
            "devices": [{"id": "m", "driver": "sim", "points": [{"name": "p", "interval": "1h"}]}],
            "upstream": [
                {
                    "id": "central",
                    "type": "http",
                    "url": f"http://127.0.0.1:{port}/ingest",
                    "token_env": "EDGE_TEST_CENTRAL_TOKEN",
                    "batch": {"max_age": "100ms"},
                }
            ],
        }
        async with running_site(tmp_path, doc, web=False):
            await until(lambda: seen, timeout=20, what="a batch delivered to the receiver")
    assert set(seen) == {f"Bearer {TOKEN}"}


def _check(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return edge_cli("check", "-c", str(config), env={**os.environ, **env})


def test_edge_check_strips_env_secrets_and_refuses_control_characters_inside(tmp_path: Path) -> None:
    token_file = tmp_path / "central.token"
    token_file.write_text("first-line\tsecond\n", encoding="utf-8")
    token_file.chmod(0o600)
    doc = {
        "upstream": [
            {"id": "central", "type": "http", "url": "http://127.0.0.1:9/in", "token_env": "EDGE_TEST_TOKEN"},
            {"id": "other", "type": "http", "url": "http://127.0.0.1:9/in", "token_file": str(token_file)},
        ],
        "consumers": [{"id": "city", "token_env": "EDGE_TEST_PULL"}],
    }
    config = site_file(tmp_path, doc)

    # surrounding whitespace is no part of a secret: only the file's tab is refused
    ok = _check(config, EDGE_TEST_TOKEN=f"{TOKEN}\n", EDGE_TEST_PULL=f"\t{TOKEN}-pull\r\n")
    assert ok.returncode == 1, ok.stdout + ok.stderr
    assert ": 1 problem\n" in ok.stderr, ok.stderr
    assert "upstream[1]: token_file: the secret in file" in ok.stderr, ok.stderr
    assert "holds a control character (U+0009 at character 11 of 17)" in ok.stderr, ok.stderr
    assert "second" not in ok.stderr, ok.stderr  # the secret itself is never shown

    token_file.write_text(f"{TOKEN}\n", encoding="utf-8")
    assert _check(config, EDGE_TEST_TOKEN=f"{TOKEN}\n", EDGE_TEST_PULL="pull\n").returncode == 0

    bad = _check(config, EDGE_TEST_TOKEN="two\nlines", EDGE_TEST_PULL="pull-ok")
    out = bad.stdout + bad.stderr
    assert bad.returncode == 1 and "Traceback" not in out, out
    assert "upstream[0]: token_env: the secret in environment variable EDGE_TEST_TOKEN holds a control" in out
    assert "U+000A at character 4 of 9" in out, out
    assert "lines" not in out, out
