"""A pull consumer's id names its cursor. A token whose consumer id is an upstream sink's (or
another component's cursor) would read and move that cursor, and the sink would then skip what the
token acknowledged: such a token is refused, whether made on the command line or through the API,
and the cursor stays as it was."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from edge.api.tokens import create_token
from edge.model import Reading
from tests.support.site import running_site
from tests.sync.helpers import answering_with, sink, wait_for


async def unavailable(request: web.Request) -> web.Response:
    """A receiver that is down for maintenance: the sink keeps its records and its cursor."""
    return web.Response(status=503, text="maintenance")


async def call(base: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.request(method, base + path, json=body) as r,
    ):
        return r.status, await r.json(content_type=None)


async def test_a_consumer_id_naming_a_sink_or_another_cursor_is_refused(tmp_path: Path) -> None:
    async with answering_with(unavailable) as url, running_site(tmp_path, {"upstream": [sink(url)]}) as rt:
        journal = rt.journal
        await wait_for(lambda: "central" in journal.cursors(), 10, "the sink's cursor")
        now = time.time()
        rt.hub.ingest([Reading(now + i * 1e-3, "dev.p", float(i)) for i in range(20)])
        committed = await journal.flush()
        await journal.register_cursor("fold", "kpi")  # another component's cursor
        before = journal.cursors()
        base = f"http://127.0.0.1:{rt.web_port}"

        # tokens made before creation checked their consumer id (tests/web/test_token_consumer_create.py)
        takers = {
            "central (made before the check)": create_token(rt.state, "x", ["pull"], consumer="central"),
            "fold": create_token(rt.state, "z", ["pull"], consumer="fold"),
        }
        owners = {"central": "the upstream sink 'central'", "fold": "the kpi cursor 'fold'"}
        for who, token in takers.items():
            cid = who.split()[0]
            for method, path, payload in (
                ("GET", "/api/v1/stream?limit=5", None),
                ("GET", f"/api/v1/stream?after={committed}&ack=true", None),
                ("POST", f"/api/v1/consumers/{cid}/ack", {"seq": committed}),
                ("GET", "/api/v1/latest", None),
            ):
                status, problem = await call(base, token, method, path, payload)
                assert status == 409, (who, method, path, status, problem)
                assert problem["consumer"] == cid and owners[cid] in problem["detail"], problem
                assert "another consumer id" in problem["detail"], problem

        # the cursors are as they were: the sink still holds every record it has not delivered
        assert journal.cursors() == before
        assert before["central"][:2] == ("sink", 0) and before["fold"][0] == "kpi"

        # a consumer id of its own reads and acknowledges as before
        own = create_token(rt.state, "own", ["pull"], consumer="platform")
        status, page = await call(base, own, "GET", "/api/v1/stream?limit=100")
        assert status == 200 and page["items"], page
        status, acked = await call(base, own, "POST", "/api/v1/consumers/platform/ack", {"seq": page["next"]})
        assert status == 200 and acked["cursor"] == page["next"], acked
        assert journal.cursors()["central"][:2] == ("sink", 0)


async def test_a_sink_configured_after_a_consumer_of_its_id_starts_on_its_own_cursor(tmp_path: Path) -> None:
    # a pull token of consumer "central" reads and acknowledges before any sink has that id
    async with running_site(tmp_path, {}) as rt:
        token = create_token(rt.state, "early", ["pull"], consumer="central")
        rt.hub.ingest([Reading(time.time() + i * 1e-3, "dev.p", float(i)) for i in range(20)])
        acked = await rt.journal.flush()
        status, body = await call(
            f"http://127.0.0.1:{rt.web_port}", token, "POST", "/api/v1/consumers/central/ack", {"seq": acked}
        )
        assert status == 200, body

    got: list[int] = []

    async def take(request: web.Request) -> web.Response:
        batch = await request.json()
        got.extend(r["seq"] for r in batch["readings"] + batch["events"])
        return web.Response(status=204)

    # then an upstream sink "central" is added: it delivers what the journal holds from the start
    async with (
        answering_with(take) as url,
        running_site(tmp_path, {"upstream": [sink(url, gzip_level=0)]}) as rt,
    ):
        s = rt.components["sync"].sinks["central"]
        committed = await rt.journal.flush()
        await wait_for(lambda: s.cursor >= committed, 20, "the sink to deliver the journal")
        assert set(range(1, acked + 1)) <= set(got), sorted(got)
        assert rt.journal.cursors()["central"][0] == "sink"
        removed = [
            r["payload"]
            for r in rt.journal.tail(500)
            if r["type"] == "event" and r["kind"] == "cursor_removed"
        ]
        assert removed == [
            {"cursor": "central", "kind": "consumer", "seq": acked, "reason": "upstream sink of this id"}
        ]
        status, problem = await call(f"http://127.0.0.1:{rt.web_port}", token, "GET", "/api/v1/stream")
        assert status == 409 and "the upstream sink 'central'" in problem["detail"], problem
