"""A receiver that refuses a record often quotes it in its answer. The answer is shown no further
than the record: a dead letter's `response` only up to the caller's class, the sink's
`last_error`, its log line and its `sync_dead_letter` notice only for a batch of public records."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from edge.model import Event
from edge.sync import deadletters
from tests.support.site import running_site
from tests.sync.helpers import answering_with, sink, wait_for
from tests.web.conftest import signed_in_roles
from tests.web.test_privacy import KIOSK

REFUSED_KINDS = {"blood_pressure", "bin_full"}
SECRET = "systolic_mmhg"  # only the sensitive record's payload holds it


async def quoting_refusal(request: web.Request) -> web.Response:
    """A strict receiver: a batch holding a refused kind gets a 400 quoting that record."""
    batch = orjson.loads(await request.read())
    bad = [r for r in batch.get("events") or [] if r.get("kind") in REFUSED_KINDS]
    if bad:
        body = {"error": "schema violation: unsupported kind in record", "record": bad[0]}
        return web.json_response(body, status=400)
    return web.Response(status=204)


def site(url: str) -> str:
    upstream = sink(url, max_privacy="sensitive", gzip_level=0)
    return "site: {id: refusals}\n" + KIOSK + "upstream:\n  - " + orjson.dumps(upstream).decode() + "\n"


async def notices(rt: Any) -> list[dict[str, Any]]:
    await rt.journal.flush()
    return [
        r["payload"] for r in rt.journal.tail(200) if r["type"] == "event" and r["kind"] == "sync_dead_letter"
    ]


async def test_a_quoted_private_record_stays_within_its_class(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.sync")
    async with answering_with(quoting_refusal) as url, running_site(tmp_path, site(url)) as rt:
        s = rt.components["sync"].sinks["central"]
        now = time.time()
        rt.hub.ingest(
            [
                Event("bin_ok", "kiosk-1", payload={"fill_pct": 10}, ts=now),
                Event("blood_pressure", "kiosk-1", payload={SECRET: 187, "privacy": "sensitive"}, ts=now),
                Event("bin_ok", "kiosk-1", payload={"fill_pct": 11}, ts=now),
            ]
        )
        committed = await rt.journal.flush()
        await wait_for(lambda: s.cursor >= committed and s.dead_letters == 1, 20, "the sensitive dead letter")

        # the sink's last error says what happened, not what the record held
        assert s.last_error.startswith("HTTP 400") and "withheld" in s.last_error, s.last_error
        assert SECRET not in s.last_error
        await wait_for(
            lambda: bool(deadletters.saved_status(rt.state, "central").get("last_error")),
            10,
            "the saved status",
        )
        assert SECRET not in orjson.dumps(deadletters.saved_status(rt.state, "central")).decode()
        # nor does its public notice in the journal
        (notice,) = await notices(rt)
        assert "response" not in notice and notice["response_withheld"] == "sensitive", notice

        async with signed_in_roles(rt) as clients:
            for role, client in clients.items():
                for path in ("/api/v1/sync", "/api/v1/status"):
                    text = orjson.dumps(await client.json("GET", path)).decode()
                    assert SECRET not in text and "withheld" in text, (role, path, text)
            seen = {
                role: (await c.json("GET", "/api/v1/sync/dead-letters"))["dead_letters"][0]
                for role, c in clients.items()
            }
            assert SECRET in seen["admin"]["response"] and "response_withheld" not in seen["admin"]
            for role in ("technician", "viewer"):
                letter = seen[role]
                assert letter["response"] is None and letter["response_withheld"] == "sensitive", letter
                assert SECRET not in orjson.dumps(letter).decode()

            # a manual retry the receiver refuses again answers with its body only up to the class
            retry = f"/api/v1/sync/dead-letters/{seen['admin']['id']}/retry"
            refused = await clients["technician"].json("POST", retry, {}, expect=502)
            assert SECRET not in orjson.dumps(refused).decode() and "withheld" in refused["detail"]
            refused = await clients["admin"].json("POST", retry, {}, expect=502)
            assert SECRET in refused["detail"]

            # a public record's refusal is shown whole, to everyone
            rt.hub.ingest([Event("bin_full", "kiosk-1", payload={"fill_pct": 97}, ts=time.time())])
            committed = await rt.journal.flush()
            await wait_for(
                lambda: s.cursor >= committed and s.dead_letters == 2, 20, "the public dead letter"
            )
            assert "fill_pct" in s.last_error and "withheld" not in s.last_error, s.last_error
            newest = (await clients["viewer"].json("GET", "/api/v1/sync/dead-letters"))["dead_letters"][0]
            assert "fill_pct" in newest["response"] and "response_withheld" not in newest
        assert "fill_pct" in (await notices(rt))[-1]["response"]

    # the log says the sink failed, never what the sensitive record held
    logged = [r.getMessage() for r in caplog.records if r.name == "edge.sync"]
    assert any("withheld" in line for line in logged), logged
    assert not any(SECRET in line for line in logged), logged
