"""The pull API on a real running site: paging, long-poll wake-up, acks, auth, parameters, privacy."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.api.pull import PAGE_SLOTS, PULL_KEY
from edge.api.tokens import create_token
from edge.model import Event, PointInfo, Privacy, Reading
from tests.support.site import running_site
from tests.sync.helpers import wait_for

CITY, OTHER = "city-token-0123456789", "other-token-0123456789"


@pytest.fixture
async def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setenv("CITY_TOKEN", CITY)
    monkeypatch.setenv("OTHER_TOKEN", OTHER)
    doc = {
        "consumers": [{"id": "city", "token_env": "CITY_TOKEN"}, {"id": "other", "token_env": "OTHER_TOKEN"}]
    }
    async with running_site(tmp_path, doc) as rt:
        rt.hub.register_points(
            [
                PointInfo("kiosk.systolic", "kiosk", "systolic", privacy=Privacy.SENSITIVE),
                PointInfo("meter.kw", "meter", "kw", unit="kW"),
            ]
        )
        rt.base = f"http://127.0.0.1:{rt.web_port}"
        yield rt


def ingest(rt: Any, n: int, point: str = "meter.kw") -> None:
    t = time.time()
    rt.hub.ingest([Reading(t + i * 1e-3, point, float(i)) for i in range(n)])


async def call(method: str, url: str, token: str | None = None, **kw: Any) -> tuple[int, Any, str]:
    headers = dict(kw.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers, **kw) as r:
        body = await r.read()
        data = None
        if r.content_type.endswith("json"):
            import orjson

            data = orjson.loads(body)
        return r.status, data, r.content_type


async def test_paging_reads_everything_in_order(site: Any) -> None:
    ingest(site, 25)
    committed = await site.journal.flush()
    seqs: list[int] = []
    after, more, pages = 0, True, 0
    while more:
        status, page, _ = await call("GET", f"{site.base}/api/v1/stream?after={after}&limit=10", CITY)
        assert status == 200
        assert len(page["items"]) <= 10
        seqs += [i["seq"] for i in page["items"]]
        after, more = page["next"], page["more"]
        pages += 1
    assert seqs == list(range(1, committed + 1)) and pages == 3
    item = page["items"][-1]
    assert set(item) == {"seq", "ts", "type", "point", "value", "quality"} and item["quality"] == "good"


async def test_long_poll_wakes_on_new_data(site: Any) -> None:
    committed = await site.journal.flush()
    url = f"{site.base}/api/v1/stream?after={committed}&wait=30"
    poll = asyncio.create_task(call("GET", url, CITY))

    svc = site.web_runner.app[PULL_KEY]
    await wait_for(lambda: svc.waiting == 1, 10, "the long poll to be waiting in the handler")
    ingest(site, 1)
    status, page, _ = await asyncio.wait_for(poll, 20)  # well before the 30 s wait ends
    assert status == 200 and [i["seq"] for i in page["items"]] == [committed + 1]
    # nothing new: an empty page after the wait, `next` unchanged
    status, page, _ = await call("GET", f"{site.base}/api/v1/stream?after={committed + 1}&wait=0.1", CITY)
    assert page == {"items": [], "next": committed + 1, "more": False}


async def test_ack_semantics(site: Any) -> None:
    ingest(site, 10)
    committed = await site.journal.flush()
    ack = f"{site.base}/api/v1/consumers/city/ack"
    assert (await call("POST", ack, CITY, json={"seq": 5}))[0] == 200
    assert site.journal.cursors()["city"][:2] == ("consumer", 5)
    # the stream now starts after the cursor by default
    _, page, _ = await call("GET", f"{site.base}/api/v1/stream?limit=1", CITY)
    assert page["items"][0]["seq"] == 6
    assert (await call("POST", ack, CITY, json={"seq": 5}))[0] == 200  # repeating is fine
    status, body, ctype = await call("POST", ack, CITY, json={"seq": 4})
    assert status == 409 and ctype == "application/problem+json" and body["cursor"] == 5
    status, body, _ = await call("POST", ack, CITY, json={"seq": committed + 1})
    assert status == 400 and str(committed) in body["detail"]
    bad_bodies: list[Any] = [
        {"seq": "7"},
        {"seq": 1.5},
        {"seq": -1},
        {"seq": True},
        [],
        {"seq": 6, "x": 1},
        {},
    ]
    for bad in bad_bodies:
        status, body, ctype = await call("POST", ack, CITY, json=bad)
        assert (status, ctype) == (400, "application/problem+json"), bad
    assert (await call("POST", ack, CITY, data=b"{nope", headers={"Content-Type": "application/json"}))[
        0
    ] == 400
    assert (await call("POST", ack, CITY, data=b"seq=1", headers={"Content-Type": "text/plain"}))[0] == 415
    assert (await call("POST", ack, CITY, data=b" " * 10_000, headers={"Content-Type": "application/json"}))[
        0
    ] == 413
    assert site.journal.get_cursor("city") == 5  # none of that moved the cursor
    status, body, _ = await call("GET", f"{site.base}/api/v1/sync", create_token(site.state, "r", ["read"]))
    city = next(c for c in body["consumers"] if c["id"] == "city")
    assert city["cursor"] == 5 and city["backlog_rows"] == committed - 5 and city["last_ack"]


async def test_a_page_asked_with_ack_acknowledges_after_first(site: Any) -> None:
    """ack=true on GET /stream moves the cursor to `after` durably before the page after it is
    read: what POST .../ack does, in the request for the next page."""
    ingest(site, 30)
    committed = await site.journal.flush()
    stream = f"{site.base}/api/v1/stream"
    seqs: list[int] = []
    status, page, _ = await call("GET", f"{stream}?after=0&limit=10", CITY)
    while page["more"]:
        seqs += [i["seq"] for i in page["items"]]
        after = page["next"]
        status, page, _ = await call("GET", f"{stream}?after={after}&limit=10&ack=true", CITY)
        assert status == 200
        assert site.journal.get_cursor("city") == after  # committed before the answer
        # a reader of the journal's file sees it too: the cursor is on disk, not only in memory
        assert site.journal.cursors()["city"][:2] == ("consumer", after)
    seqs += [i["seq"] for i in page["items"]]
    assert seqs == list(range(1, committed + 1))
    assert site.journal.get_cursor("other") in (None, 0)  # only the caller's own cursor moved
    # the same rules as POST .../ack: backwards is a 409 and serves no page, past the end a 400
    status, body, ctype = await call("GET", f"{stream}?after=5&ack=true", CITY)
    assert (status, ctype) == (409, "application/problem+json") and body["cursor"] == after
    status, body, _ = await call("GET", f"{stream}?after={committed + 1}&ack=1", CITY)
    assert status == 400 and str(committed) in body["detail"]
    status, page, _ = await call("GET", f"{stream}?after=5&ack=false", CITY)
    assert status == 200 and page["items"][0]["seq"] == 6  # ack=false reads as before
    assert site.journal.get_cursor("city") == after


async def test_auth_failures(site: Any) -> None:
    stream = f"{site.base}/api/v1/stream"
    status, _, ctype = await call("GET", stream)
    assert (status, ctype) == (401, "application/problem+json")
    assert (await call("GET", stream, "not-a-token"))[0] == 401
    reader = create_token(site.state, "viewer", ["read"])
    assert (await call("GET", stream, reader))[0] == 403  # read is not pull
    assert (await call("POST", f"{site.base}/api/v1/consumers/other/ack", CITY, json={"seq": 0}))[0] == 403
    assert (await call("GET", f"{site.base}/api/v1/sync", CITY))[0] == 403  # pull is not read
    assert (await call("GET", f"{site.base}/metrics", CITY))[0] == 403
    # an API token with scope pull and a consumer id works like the site-file token
    api_pull = create_token(site.state, "pull", ["pull"], consumer="other")
    assert (await call("GET", stream, api_pull))[0] == 200
    assert (await call("POST", f"{site.base}/api/v1/consumers/other/ack", api_pull, json={"seq": 1}))[
        0
    ] == 200
    assert site.journal.get_cursor("other") == 1


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=abc",
        "limit=10001",
        "after=-1",
        "after=1e3",
        "after=99999999999999999999",
        "wait=61",
        "wait=nan",
        "wait=x",
        "ack=yes",
        "ack=true",  # acknowledges `after`, which is not given
    ],
)
async def test_malformed_parameters(site: Any, query: str) -> None:
    status, body, ctype = await call("GET", f"{site.base}/api/v1/stream?{query}", CITY)
    assert (status, ctype) == (400, "application/problem+json")
    assert body["parameter"] == query.split("=")[0] and "expected" in body["detail"]


async def test_privacy_and_metadata(site: Any) -> None:
    ingest(site, 3, "kiosk.systolic")
    ingest(site, 2)
    committed = await site.journal.flush()
    _, page, _ = await call("GET", f"{site.base}/api/v1/stream?after=0", CITY)
    assert {i.get("point") for i in page["items"] if i["type"] == "reading"} == {"meter.kw"}
    assert page["next"] == committed  # the withheld rows are passed, not re-served
    _, pts, _ = await call("GET", f"{site.base}/api/v1/points", CITY)
    kiosk = next(p for p in pts["points"] if p["id"] == "kiosk.systolic")
    assert kiosk["privacy"] == "sensitive" and kiosk["device"] == "kiosk"
    _, latest, _ = await call("GET", f"{site.base}/api/v1/latest", CITY)
    assert [x["point"] for x in latest["latest"]] == ["meter.kw"]
    reader = create_token(site.state, "viewer", ["read"])  # a read token sees public data only
    _, latest, _ = await call("GET", f"{site.base}/api/v1/latest", reader)
    assert {x["point"] for x in latest["latest"]} == {"meter.kw"}
    admin = create_token(site.state, "admin", ["read", "admin"])
    _, latest, _ = await call("GET", f"{site.base}/api/v1/latest", admin)
    assert {x["point"] for x in latest["latest"]} == {"meter.kw", "kiosk.systolic"}


async def test_a_point_whose_class_rises_is_withheld_from_the_next_page(site: Any) -> None:
    """A rule's `set:` point rises to the class of what it copied: the consumer's filter must not
    keep sending it on a verdict it cached while the point was public."""
    site.hub.register_points([PointInfo("health.last_bp", "health", "last_bp")])
    site.hub.ingest([Reading(time.time(), "health.last_bp", 120.0)])
    first = await site.journal.flush()
    _, page, _ = await call("GET", f"{site.base}/api/v1/stream?after=0", CITY)
    assert [i["value"] for i in page["items"] if i.get("point") == "health.last_bp"] == [120.0]

    site.hub.register_points([PointInfo("health.last_bp", "health", "last_bp", privacy=Privacy.SENSITIVE)])
    site.hub.ingest([Reading(time.time(), "health.last_bp", 151.0)])
    await site.journal.flush()
    _, page, _ = await call("GET", f"{site.base}/api/v1/stream?after={first}", CITY)
    assert [i for i in page["items"] if i.get("point") == "health.last_bp"] == []


async def test_every_record_shape_on_a_page(site: Any) -> None:
    """Readings of each value type and quality and events with and without a payload come out
    in the one record shape; a sensitive event is withheld and passed."""
    t = 1.7e9
    site.journal.append(
        [
            Reading(t, "meter.kw", 1.5),
            Reading(t + 1, "gate.open", True, 1),
            Reading(t + 2, "gate.count", 7, 2),
            Reading(t + 3, "panel.mode", "auto, eco"),
            Event("alert", "rules.hot", "warning", {"point": "meter.kw", "value": 41.5}, t + 4),
            Event("blood_pressure", "kiosk", "info", {"systolic": 151}, t + 5),
            Event("device_online", "meter", "info", {}, t + 6),
        ]
    )
    end = await site.journal.flush()
    first = end - 6
    _, page, _ = await call("GET", f"{site.base}/api/v1/stream?after={first - 1}", CITY)
    reading = {"type": "reading"}
    assert page == {
        "items": [
            {"seq": first, "ts": t, **reading, "point": "meter.kw", "value": 1.5, "quality": "good"},
            {"seq": first + 1, "ts": t + 1, **reading, "point": "gate.open", "value": True, "quality": "bad"},
            {"seq": first + 2, "ts": t + 2, **reading, "point": "gate.count", "value": 7, "quality": "stale"},
            {
                "seq": first + 3,
                "ts": t + 3,
                **reading,
                "point": "panel.mode",
                "value": "auto, eco",
                "quality": "good",
            },
            {
                "seq": first + 4,
                "ts": t + 4,
                "type": "event",
                "kind": "alert",
                "source": "rules.hot",
                "severity": "warning",
                "payload": {"point": "meter.kw", "value": 41.5},
            },
            {
                "seq": end,
                "ts": t + 6,
                "type": "event",
                "kind": "device_online",
                "source": "meter",
                "severity": "info",
                "payload": {},
            },
        ],
        "next": end,
        "more": False,
    }


async def test_pages_are_built_off_the_loop_two_at_once(site: Any) -> None:
    """A page is read, filtered and encoded in a worker thread, PAGE_SLOTS at a time: while two
    are being built the loop still answers, and the other requests wait their turn."""
    ingest(site, 20)
    await site.journal.flush()
    svc = site.web_runner.app[PULL_KEY]
    build = svc.page
    release = threading.Event()
    lock = threading.Lock()
    building: list[int] = []
    threads: set[int] = set()
    loop_thread = threading.get_ident()
    peak = 0

    def held_page(*args: Any) -> Any:
        nonlocal peak
        with lock:
            building.append(threading.get_ident())
            threads.add(threading.get_ident())
            peak = max(peak, len(building))
        try:
            if threading.get_ident() != loop_thread:  # never block the loop itself
                release.wait(30)
            return build(*args)
        finally:
            with lock:
                building.pop()

    svc.page = held_page
    stream = f"{site.base}/api/v1/stream?after=0&limit=5"
    polls = [asyncio.create_task(call("GET", stream, CITY)) for _ in range(PAGE_SLOTS + 3)]
    try:
        await wait_for(lambda: len(building) >= PAGE_SLOTS, 10, "two pages to be in their threads")
        status, _, _ = await call("GET", f"{site.base}/api/v1/points", CITY)
        assert status == 200  # the loop is free while both pages are built
        assert len(building) == PAGE_SLOTS  # the others are still waiting for a slot
    finally:
        release.set()
    pages = await asyncio.gather(*polls)
    assert {(status, len(page["items"])) for status, page, _ in pages} == {(200, 5)}
    assert peak == PAGE_SLOTS and loop_thread not in threads
