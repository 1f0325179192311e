"""The Alerts & events page through the trend index's copy of the events, on a real runtime: an
alert older than the journal's raw scan window is still listed, filtered, acknowledged and
active; an event the follower has not copied yet is listed at once and, once copied, once; a
viewer's payloads are minimised as before; a deleted trend.db gives the events back after its
rebuild."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edge.model import Event, Reading, Severity
from edge.store.trend import TrendIndex
from edge.web import ui_api
from tests.store.helpers import sql
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import PASSWORD, Client, make_user, setup_code

SITE = """
site: {id: events-index-test, name: 事件}
devices:
  - id: meter
    driver: sim
    points:
      - {name: power_kw, signal: constant, value: 5, interval: 1h, unit: kW}
"""
SCAN = 200  # the raw scan's window, as on a busy site: it cannot reach an hour back


@pytest.fixture
async def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setattr(ui_api, "SCAN_ROWS", SCAN)
    async with running_site(tmp_path, SITE) as rt:
        yield rt


def alert(source: str, state: str, ts: float, severity: str = Severity.CRITICAL, **payload: Any) -> Event:
    return Event("alert", source, severity, {"state": state, **payload}, ts)


async def journal(rt: Any, records: list[Any], filler: int = 0) -> list[int]:
    """Journal `records`, then `filler` readings that push them out of the raw scan's window;
    returns the records' seqs. Everything is rolled up when it returns."""
    await rt.journal.flush()  # the runtime's own start-up events are not the test's records
    first = rt.journal.committed_seq + 1
    now = time.time()
    rt.hub.ingest(
        records + [Reading(now - 1 + i / 1e4, "meter.power_kw", float(i), 0) for i in range(filler)]
    )
    await rt.journal.flush()
    await rt.components["trend"].caught_up()
    rows = sql(
        rt.journal, "SELECT seq FROM journal WHERE seq >= ? AND kind IS NOT NULL ORDER BY seq", (first,)
    )
    return [r[0] for r in rows]


async def seqs(c: Client, query: str = "", since_seq: int = 0) -> list[int]:
    """The listed events' seqs, from `since_seq` on (the runtime journals its own events too)."""
    return [
        e["seq"] for e in (await c.json("GET", "/api/v1/events" + query))["events"] if e["seq"] >= since_seq
    ]


@contextmanager
def follower_held(rt: Any) -> Iterator[None]:
    """The follower cannot commit (its trend file is write-locked) while the block runs: whatever
    is journaled meanwhile is after its cursor."""
    conn = sqlite3.connect(rt.components["trend"].path, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def test_an_alert_older_than_the_scan_window_is_listed_filtered_and_acknowledged(
    site: Any, admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    old, door = await journal(
        site,
        [
            alert("rule:overheat", "fired", now - 3600, point="meter.power_kw"),
            Event("door_open", "gate-1", Severity.INFO, {"door": "north"}, now - 3500),
        ],
        filler=3 * SCAN,
    )
    trend = site.components.pop("trend")  # without the index, the raw scan answers alone
    try:
        body = await admin.json("GET", "/api/v1/events")
        assert old not in [e["seq"] for e in body["events"]], "the raw scan must not reach it"
        assert body["indexed_to_seq"] is None
        assert (await admin.json("GET", "/api/v1/alerts/active"))["alerts"] == []
    finally:
        site.components["trend"] = trend

    body = await admin.json("GET", "/api/v1/events")
    assert [e["seq"] for e in body["events"] if e["seq"] >= old] == [door, old], "newest first"
    assert body["indexed_to_seq"] >= door and body["scanned_from_seq"] >= body["indexed_to_seq"]
    listed = body["events"][1]
    assert listed["kind"] == "alert" and listed["source"] == "rule:overheat" and listed["ack"] is None
    assert listed["payload"] == {"state": "fired", "point": "meter.power_kw"} and listed["ts"] == now - 3600
    assert await seqs(admin, "?kind=alert") == [old]
    assert await seqs(admin, "?kind=door_open") == [door]
    assert await seqs(admin, "?severity=critical") == [old]
    assert await seqs(admin, "?severity=info", old) == [door]
    assert await seqs(admin, "?source=gate-1") == [door]
    assert await seqs(admin, f"?since={now - 3550}", old) == [door]
    assert await seqs(admin, f"?since={now - 4000}&kind=alert&severity=critical") == [old]
    assert await seqs(admin, "?limit=1") == [door]
    ours = {old, door}  # the runtime may journal events of its own meanwhile (a slow run)
    assert [s for s in await seqs(admin, "?unacked=1", old) if s in ours] == [door, old]
    assert [a["seq"] for a in (await admin.json("GET", "/api/v1/alerts/active"))["alerts"]] == [old]

    await admin.json("POST", f"/api/v1/alerts/{old}/ack", {"comment": "fan replaced"})
    assert [s for s in await seqs(admin, "?unacked=true", old) if s in ours] == [door]
    (acked,) = (await admin.json("GET", "/api/v1/events?kind=alert"))["events"]
    assert acked["ack"]["user"] == "admin" and acked["ack"]["comment"] == "fan replaced"
    (active,) = (await admin.json("GET", "/api/v1/alerts/active"))["alerts"]
    assert active["seq"] == old and active["ack"]["comment"] == "fan replaced"


async def test_unacked_skips_acknowledged_events_past_the_limit(
    site: Any, admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest `limit` unacknowledged events, not the unacknowledged among the newest `limit`."""
    monkeypatch.setattr(ui_api, "EVENT_PAGE", 2)  # several pages of acknowledged events
    now = time.time()
    first, *newer = await journal(
        site, [alert(f"rule:r{i}", "fired", now - 3600 + i) for i in range(8)], filler=3 * SCAN
    )
    for seq in newer:
        await admin.json("POST", f"/api/v1/alerts/{seq}/ack", {"comment": "seen"})
    assert await seqs(admin, "?unacked=1&kind=alert&limit=2") == [first]
    assert await seqs(admin, "?unacked=1&kind=alert&limit=1") == [first]
    assert await seqs(admin, "?kind=alert&limit=2") == newer[:-3:-1]


async def test_an_event_not_rolled_up_yet_is_listed_at_once_and_once_after(site: Any, admin: Client) -> None:
    trend = site.components["trend"]
    now = time.time()
    (old,) = await journal(site, [alert("rule:overheat", "fired", now - 3600)], filler=3 * SCAN)
    with follower_held(site):
        site.hub.ingest([alert("rule:overheat", "cleared", now), alert("rule:leak", "fired", now)])
        await site.journal.flush()
        cleared, leak = site.journal.committed_seq - 1, site.journal.committed_seq
        body = await admin.json("GET", "/api/v1/events?kind=alert")
        assert body["indexed_to_seq"] < cleared, "the follower has not copied them"
        assert [e["seq"] for e in body["events"]] == [leak, cleared, old]
        active = (await admin.json("GET", "/api/v1/alerts/active"))["alerts"]
        assert [a["seq"] for a in active] == [leak], "the newest state of each rule wins"
        await admin.json("POST", f"/api/v1/alerts/{leak}/ack", {})
    assert await trend.caught_up() >= leak
    body = await admin.json("GET", "/api/v1/events?kind=alert")
    assert body["indexed_to_seq"] >= leak
    assert [e["seq"] for e in body["events"]] == [leak, cleared, old], "each listed once"
    assert body["events"][0]["ack"]["user"] == "admin"
    assert [a["seq"] for a in (await admin.json("GET", "/api/v1/alerts/active"))["alerts"]] == [leak]


async def test_a_viewer_gets_minimised_payloads_from_the_index_and_the_tail(site: Any, admin: Client) -> None:
    now = time.time()
    plate = {"plate": "沪A12345", "privacy": "personal"}
    (indexed,) = await journal(
        site, [Event("vehicle_passage", "gate-1", payload=plate, ts=now - 3600)], 3 * SCAN
    )
    viewer = await make_user(admin, site, "wang", "viewer")
    try:
        with follower_held(site):
            site.hub.ingest([Event("vehicle_passage", "gate-1", payload=plate, ts=now)])
            await site.journal.flush()
            tail = site.journal.committed_seq
            seen = (await viewer.json("GET", "/api/v1/events?kind=vehicle_passage"))["events"]
            assert [e["seq"] for e in seen] == [tail, indexed]
            assert [e["payload"] for e in seen] == [{"privacy": "personal", "redacted": True}] * 2
            admin_seen = (await admin.json("GET", "/api/v1/events?kind=vehicle_passage"))["events"]
            assert [e["payload"] for e in admin_seen] == [plate, plate]
    finally:
        await viewer.close()


async def test_a_deleted_trend_file_gives_the_events_back_after_its_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui_api, "SCAN_ROWS", SCAN)
    now = time.time()
    async with running_site(tmp_path, SITE) as rt:
        admin = Client(f"http://127.0.0.1:{rt.web_port}")
        try:
            await admin.json(
                "POST",
                "/api/v1/auth/setup",
                {"code": setup_code(rt), "name": "admin", "password": PASSWORD},
                201,
            )
            (old,) = await journal(rt, [alert("rule:overheat", "fired", now - 3600)], filler=3 * SCAN)
            assert await seqs(admin, "?kind=alert") == [old]
        finally:
            await admin.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"trend.db{suffix}").unlink(missing_ok=True)
    async with running_site(tmp_path, SITE) as rt:
        trend = rt.components["trend"]
        assert isinstance(trend, TrendIndex)
        admin = Client(f"http://127.0.0.1:{rt.web_port}")
        try:
            await admin.login("admin")
            await until(lambda: trend.cursor >= old, what="the rebuild past the alert")
            assert await seqs(admin, "?kind=alert") == [old]
            assert await seqs(admin, "?kind=alert&unacked=1") == [old]
            assert trend.status()["events"] >= 0
        finally:
            await admin.close()
