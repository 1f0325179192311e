"""A pull token's consumer id names the journal cursor it reads and moves. One that names an
upstream sink of the site, a component's reserved cursor (the KPI fold's `kpi`) or a cursor of
another kind already in the journal is refused when the token is made: `edge tokens create` exits
1 saying why, the API answers 422 "Invalid consumer"; no token is made and no cursor moves. Any
other consumer id is accepted as before."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from edge.api.tokens import create_token, list_tokens
from tests.support.cli import edge_cli
from tests.support.site import running_site
from tests.sync.helpers import answering_with, sink, wait_for


async def unavailable(request: web.Request) -> web.Response:
    return web.Response(status=503, text="maintenance")


async def post_token(base: str, admin: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http,
        http.post(base + "/api/v1/tokens", json=body) as r,
    ):
        return r.status, await r.json(content_type=None)


OWNERS = {
    "central": "the upstream sink 'central'",
    "kpi": "the KPI fold's cursor 'kpi'",
    "fold": "the kpi cursor 'fold'",
}


async def test_a_consumer_id_naming_another_cursor_is_refused_when_the_token_is_made(tmp_path: Path) -> None:
    async with answering_with(unavailable) as url, running_site(tmp_path, {"upstream": [sink(url)]}) as rt:
        journal = rt.journal
        await wait_for(lambda: "central" in journal.cursors(), 10, "the sink's cursor")
        await journal.register_cursor("fold", "kpi")  # a component's cursor under another name
        before = journal.cursors()
        base = f"http://127.0.0.1:{rt.web_port}"
        admin = create_token(rt.state, "admin", ["admin"])
        made_before = [t["id"] for t in list_tokens(rt.state)]
        config = str(tmp_path / "site.yaml")

        for cid, owner in OWNERS.items():
            cli = await asyncio.to_thread(
                edge_cli, "tokens", "create", "-c", config, "x", "--scope", "pull", "--consumer", cid
            )
            assert cli.returncode == 1, (cid, cli.stdout, cli.stderr)
            assert cli.stdout == "" and "Traceback" not in cli.stderr, cli.stderr
            assert f"error: consumer id {cid!r} names {owner}" in cli.stderr, cli.stderr
            assert "give the pull token another consumer id" in cli.stderr, cli.stderr

            status, problem = await post_token(
                base, admin, {"name": "y", "scopes": ["pull"], "consumer": cid}
            )
            assert status == 422, (cid, problem)
            assert problem["title"] == "Invalid consumer" and problem["consumer"] == cid, problem
            assert owner in problem["detail"] and "another consumer id" in problem["detail"], problem
            assert problem["message_key"] == "msg.token.consumer_taken", problem

        assert [t["id"] for t in list_tokens(rt.state)] == made_before  # nothing made
        assert journal.cursors() == before  # nothing moved

        # a consumer id of its own is made, on the command line and through the API
        cli = await asyncio.to_thread(
            edge_cli, "tokens", "create", "-c", config, "x", "--scope", "pull", "--consumer", "platform"
        )
        assert cli.returncode == 0 and cli.stdout.startswith("ce_"), cli.stderr
        status, made = await post_token(
            base, admin, {"name": "y", "scopes": ["pull"], "consumer": "platform-2"}
        )
        assert status == 201, made
        assert [t["consumer"] for t in list_tokens(rt.state)[len(made_before) :]] == [
            "platform",
            "platform-2",
        ]


def test_edge_tokens_create_refuses_a_sink_id_without_a_journal_yet(tmp_path: Path) -> None:
    """Before the gateway's first start there is no journal: the site file alone says the id is a
    sink's, and nothing is created (no journal either)."""
    from tests.support.site import site_file

    config = site_file(tmp_path, {"upstream": [sink("http://127.0.0.1:9/ingest")]})
    cli = edge_cli("tokens", "create", "-c", str(config), "x", "--scope", "pull", "--consumer", "central")
    assert cli.returncode == 1, cli.stdout
    assert "consumer id 'central' names the upstream sink 'central'" in cli.stderr, cli.stderr
    assert not (tmp_path / "edge.db").exists()
