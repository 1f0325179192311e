"""A page asked for after a seq the journal never committed is refused with the journal's end,
as an ack past the end is: an empty page with `next` = `after` left a consumer that does not ack
waiting on it for ever without a word."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from edge.model import Reading
from tests.support.site import running_site

CITY = "city-token-0123456789"


@pytest.fixture
async def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setenv("CITY_TOKEN", CITY)
    doc = {"consumers": [{"id": "city", "token_env": "CITY_TOKEN"}]}
    async with running_site(tmp_path, doc) as rt:
        rt.base = f"http://127.0.0.1:{rt.web_port}/api/v1/stream"
        yield rt


async def get(url: str) -> tuple[int, str, Any]:
    headers = {"Authorization": f"Bearer {CITY}"}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, r.content_type, orjson.loads(await r.read())


async def test_a_page_after_the_end_is_a_problem_naming_the_end(site: Any) -> None:
    t = time.time()
    site.hub.ingest([Reading(t + i * 1e-3, "meter.kw", float(i)) for i in range(10)])
    committed = await site.journal.flush()
    for query in (f"after={committed + 1}", "after=99999999999", f"after={committed + 1}&wait=30"):
        status, ctype, body = await get(f"{site.base}?{query}")
        assert (status, ctype) == (400, "application/problem+json"), (query, body)
        assert body["committed"] == committed, body
        assert str(committed) in body["detail"] and "past" in body["detail"], body
    # acknowledging past the end says the same, with the end to go on from
    status, _, body = await get(f"{site.base}?after={committed + 1}&ack=true")
    assert status == 400 and body["committed"] == committed, body
    assert site.journal.get_cursor("city") in (None, 0)  # nothing moved
    # at the end itself: an empty page, as before; from the end given, the records as they come
    status, _, page = await get(f"{site.base}?after={committed}")
    assert status == 200 and page == {"items": [], "next": committed, "more": False}
    status, _, page = await get(f"{site.base}?after={committed - 3}")
    assert status == 200 and [i["seq"] for i in page["items"]] == [committed - 2, committed - 1, committed]


async def test_an_ack_of_a_row_committed_before_the_journal_said_so_is_taken(site: Any) -> None:
    """A page's `next` may name a row SQLite has committed a moment before the journal's
    `committed_seq` says so (a consumer acking the `next` it was just given was refused "Ack past
    the end" and got the records again): the journal itself is asked, as for a page's `after`. A
    row committed behind the journal's back stands in for that moment."""
    import sqlite3

    t = time.time()
    site.hub.ingest([Reading(t, "meter.kw", 1.0)])
    committed = await site.journal.flush()
    conn = sqlite3.connect(site.journal.path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO journal(seq, ts, point, value, quality) VALUES (?, ?, 'meter.kw', 2.0, 0)",
                (committed + 1, t + 1),
            )
    finally:
        conn.close()
    assert site.journal.committed_seq == committed
    headers = {"Authorization": f"Bearer {CITY}"}
    async with aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{site.web_port}/api/v1/consumers/city/ack"
        async with s.post(url, json={"seq": committed + 1}, headers=headers) as r:
            body = orjson.loads(await r.read())
            assert r.status == 200, body
    assert site.journal.get_cursor("city") == committed + 1
    # a seq no row reaches is still past the end
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={"seq": committed + 5}, headers=headers) as r:
            assert r.status == 400
