"""`edge status` with a token names the site as it does without one (its id, then its name), not
as the Python dict of /api/v1/status's `site`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge.api.tokens import create_token
from edge.status_cli import HEALTHY
from tests.support.cli import edge_cli
from tests.support.ports import free_port
from tests.support.site import running_site, site_file


async def test_status_with_a_token_names_the_site_in_words(tmp_path: Path) -> None:
    doc = {
        "site": {"id": "words-site", "name": "阳光花园 1 号网关"},
        "web": {"listen": f"127.0.0.1:{free_port()}"},
    }
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, doc) as rt:
        token = tmp_path / "status.token"
        token.write_text(create_token(rt.state, "status", ["read"]) + "\n")
        done = await asyncio.to_thread(edge_cli, "status", "-c", str(config), "--token-file", str(token))
    assert done.returncode == HEALTHY, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("words-site (阳光花园 1 号网关): healthy  (version "), first
    assert "{" not in done.stdout
