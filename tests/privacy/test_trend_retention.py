"""The trend index keeps personal and sensitive data no longer than the journal does, on a real
gateway (journal, trend.db, web API) driven by a test clock: a sensitive event and the buckets of a
sensitive or personal point go at their class's retention — from the index's tables, from the raw
bytes of its files and from the API's answers — and are counted; public ones stay to keep_history;
a forward jump of the wall clock deletes nothing until the clock is trusted again; a trend file of
the schema before the classes is rebuilt with them."""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

from edge.clock import ClockSample, SyncStatus
from edge.model import Event, Reading
from edge.runtime import Runtime
from edge.store import trend as trend_module
from edge.store.trend import TrendIndex
from tests.store.helpers import open_journal
from tests.support.site import load
from tests.support.waiting import until
from tests.web.conftest import Client, signed_in_admin

DAY = 86400.0
START = 1_800_000_000.0  # the test clock's wall time at the start (2027)
MINUTE = 60.0
OLD, MID = START - 50 * MINUTE, START - 30 * MINUTE  # readings and events the test puts in
RESIDENTS = {OLD: b"R-50417", MID: b"R-30922"}  # each measurement's resident, found in the raw bytes
PUBLIC_MARK = b"door-5531-opened"  # a public event's text: the grep sees clear text

SITE = {
    "site": {"id": "trend-retention", "name": "trend retention"},
    "storage": {"keep_history": "7d"},
    "privacy": {"retention": {"sensitive": "1h", "personal": "2h"}},
    "devices": [
        {
            "id": "kiosk",
            "driver": "sim",
            "points": [
                {"name": "sys", "signal": "constant", "value": 120, "interval": "1h", "privacy": "sensitive"},
                {
                    "name": "weight",
                    "signal": "constant",
                    "value": 70,
                    "interval": "1h",
                    "privacy": "personal",
                },
            ],
        },
        {
            "id": "meter",
            "driver": "sim",
            "points": [{"name": "kw", "signal": "constant", "value": 3, "interval": "1h"}],
        },
    ],
}
SENSITIVE_POINT, PERSONAL_POINT, PUBLIC_POINT = "kiosk.sys", "kiosk.weight", "meter.kw"


class Clocks:
    """Wall and monotonic time and the kernel's sync status as the test sets them; counts the
    journal writer's reads (one per retention pass). Like a real monotonic clock it never reads the
    same twice, so a check of the clock's trust is always after, or before, a pass's jump."""

    def __init__(self) -> None:
        self.wall, self.mono, self.synced, self.reads = START, 100.0, False, 0
        self._ticks = itertools.count()  # atomic, from the writer thread and the event loop alike

    def sample(self) -> ClockSample:
        if threading.current_thread().name == "journal-writer":
            self.reads += 1
        return ClockSample(self.wall, self.mono + next(self._ticks) * 1e-6)

    def sync(self) -> SyncStatus:
        return SyncStatus(self.synced, "test clock")


def gateway(tmp_path: Path, clocks: Clocks) -> Runtime:
    rt = Runtime(
        load(tmp_path, SITE), clock=lambda: clocks.wall, clock_sample=clocks.sample, clock_sync=clocks.sync
    )
    rt.journal.retention_interval = 0.01
    rt.journal.expirer_interval = 0.0  # the trend index is handed the trusted time at every pass
    return rt


def trend_of(rt: Runtime) -> TrendIndex:
    trend = rt.component(TrendIndex)
    assert trend is not None
    trend.idle_interval = 0.05
    return trend


async def put_records(rt: Runtime) -> None:
    """At OLD and MID: a measurement (sensitive by kind) naming its resident, a reading of each
    point; at OLD a public event. Committed and rolled up."""
    for ts in (OLD, MID):
        rt.hub.ingest(
            [
                Reading(ts, SENSITIVE_POINT, 131.0),
                Reading(ts, PERSONAL_POINT, 71.5),
                Reading(ts, PUBLIC_POINT, 3.5),
            ]
        )
        payload = {"resident": RESIDENTS[ts].decode(), "systolic_mmhg": 131, "diastolic_mmhg": 84}
        rt.hub.publish_event(Event("blood_pressure", "kiosk", payload=payload, ts=ts))
    rt.hub.publish_event(Event("door", "meter", payload={"note": PUBLIC_MARK.decode()}, ts=OLD))
    await rt.journal.flush()
    await trend_of(rt).caught_up()


def trend_bytes(folder: Path) -> bytes:
    """trend.db and whatever SQLite keeps beside it (-wal, -shm), as they are on disk."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob("trend.db*")))


def stored(folder: Path, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{folder / 'trend.db'}?mode=ro", uri=True)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def buckets(folder: Path) -> dict[str, set[int]]:
    """The minutes the index holds, per point."""
    out: dict[str, set[int]] = {}
    for point, bucket in stored(folder, "SELECT point, bucket FROM minute"):
        out.setdefault(point, set()).add(bucket)
    return out


def past(held: dict[str, set[int]], point: str, cutoff: float) -> set[int]:
    """The minutes of `point` that begin before `cutoff` (a bucket goes once its first second is
    past its retention)."""
    return {b for b in held.get(point, set()) if b * 60 < cutoff}


async def served_events(admin: Client, kind: str) -> list[dict[str, Any]]:
    body = await admin.json("GET", f"/api/v1/events?kind={kind}&limit=500")
    return list(body["events"])


async def served_minutes(admin: Client, point: str) -> set[int]:
    """The minutes the history API answers for `point` over the test's hours."""
    since, until_ = START - 3 * 3600, START + 3 * 3600
    body = await admin.json(
        "GET", f"/api/v1/history?point={point}&resolution=minute&since={since}&until={until_}&limit=1000"
    )
    assert body["resolution"] == "minute"
    return {math.floor(ts / 60) for ts, _avg, _q in body["readings"]}


async def follower_cycles(trend: TrendIndex, n: int) -> None:
    """Wait for `n` more rollups of the follower (each is followed by its expiry pass)."""
    for _ in range(n):
        trend.rolled.clear()
        await asyncio.wait_for(trend.rolled.wait(), 10)


async def test_private_buckets_and_events_go_at_their_class_retention_public_ones_stay(
    tmp_path: Path,
) -> None:
    clocks = Clocks()
    rt = gateway(tmp_path, clocks)
    await rt.start()
    try:
        trend = trend_of(rt)
        async with signed_in_admin(rt) as admin:
            await put_records(rt)
            before = buckets(tmp_path)
            raw = trend_bytes(tmp_path)
            assert all(r in raw for r in RESIDENTS.values()) and PUBLIC_MARK in raw
            assert {OLD, MID} <= {e["ts"] for e in await served_events(admin, "blood_pressure")}
            assert math.floor(OLD / 60) in await served_minutes(admin, SENSITIVE_POINT)

            # 80 minutes later (the monotonic clock agrees: no jump): sensitive data from before
            # START + 20 min and personal data from before START - 40 min are past their retention
            clocks.wall += 80 * MINUTE
            clocks.mono += 80 * MINUTE
            sensitive_cutoff, personal_cutoff = clocks.wall - 3600, clocks.wall - 7200
            gone = {
                SENSITIVE_POINT: past(before, SENSITIVE_POINT, sensitive_cutoff),
                PERSONAL_POINT: past(before, PERSONAL_POINT, personal_cutoff),
            }
            assert (
                math.floor(OLD / 60) in gone[PERSONAL_POINT] and math.floor(MID / 60) in gone[SENSITIVE_POINT]
            )
            assert math.floor(MID / 60) not in gone[PERSONAL_POINT]
            want_buckets = sum(len(g) for g in gone.values())
            # nothing of them left in the file or its WAL (secure_delete, the WAL truncated)
            await until(
                lambda: not any(r in trend_bytes(tmp_path) for r in RESIDENTS.values()),
                what="the residents' bytes gone from trend.db",
            )
            await until(
                lambda: trend.status().get("retention_expired_buckets") == want_buckets,
                what="the expired buckets deleted from the index",
            )
            assert PUBLIC_MARK in trend_bytes(tmp_path)

            held = buckets(tmp_path)
            assert not past(held, SENSITIVE_POINT, sensitive_cutoff)
            assert not past(held, PERSONAL_POINT, personal_cutoff)
            assert held[PERSONAL_POINT] >= before[PERSONAL_POINT] - gone[PERSONAL_POINT]
            assert held[PUBLIC_POINT] >= before[PUBLIC_POINT]  # public data keeps keep_history
            assert stored(tmp_path, "SELECT kind FROM events WHERE kind IN ('blood_pressure', 'door')") == [
                ("door",)
            ]

            # the API answers none of it, and the public event and buckets as before
            assert [
                e for e in await served_events(admin, "blood_pressure") if e["ts"] < sensitive_cutoff
            ] == []
            assert len(await served_events(admin, "door")) == 1
            assert not {m for m in await served_minutes(admin, SENSITIVE_POINT) if m * 60 < sensitive_cutoff}
            personal = await served_minutes(admin, PERSONAL_POINT)
            assert math.floor(OLD / 60) not in personal and math.floor(MID / 60) in personal
            assert before[PUBLIC_POINT] <= await served_minutes(admin, PUBLIC_POINT)

            # counted: in the status, and committed with the deletions in trend.db
            status = trend.status()
            assert status["retention_expired_events"] == 2
            assert status["retention_expired_buckets"] == want_buckets
            assert dict(
                stored(tmp_path, "SELECT key, value FROM meta WHERE key LIKE 'retention_expired%'")
            ) == {
                "retention_expired_buckets": want_buckets,
                "retention_expired_events": 2,
            }
    finally:
        await rt.stop()


async def test_a_forward_jump_deletes_nothing_from_the_index_until_the_clock_is_trusted(
    tmp_path: Path,
) -> None:
    clocks = Clocks()
    rt = gateway(tmp_path, clocks)
    await rt.start()
    try:
        trend = trend_of(rt)
        await put_records(rt)
        before = buckets(tmp_path)
        clocks.wall += 2 * DAY  # the wall clock runs two days ahead of the 10 s that passed
        clocks.mono += 10
        await until(
            lambda: rt.journal.retention_paused is not None, timeout=30, what="the journal's retention paused"
        )
        rt.check_clock()
        assert not rt.clock_trust.trusted
        target = clocks.reads + 10
        await until(lambda: clocks.reads >= target, what="10 more retention passes")
        await follower_cycles(trend, 5)
        assert trend.counters == {"retention_expired_buckets": 0, "retention_expired_events": 0}
        assert buckets(tmp_path) == before
        assert stored(tmp_path, "SELECT count(*) FROM events WHERE kind = 'blood_pressure'") == [(2,)]

        clocks.synced = True  # NTP answers: the wall clock is right after all
        rt.check_clock()
        await until(
            lambda: trend.counters["retention_expired_events"] == 2,
            what="the index's retention resuming by the trusted clock",
        )
        await follower_cycles(trend, 2)
        held = buckets(tmp_path)
        assert SENSITIVE_POINT not in held and PERSONAL_POINT not in held  # two days: past both
        assert held[PUBLIC_POINT] >= before[PUBLIC_POINT]  # public: within keep_history
    finally:
        await rt.stop()


async def test_a_trend_file_of_schema_2_is_rebuilt_with_the_classes(tmp_path: Path) -> None:
    """A trend.db from before the classes, caught up: its buckets and events have no class to
    expire by, so the follower starts over and copies each row's class from the journal."""
    j = open_journal(tmp_path, keep_history=None)
    try:
        j.append([Reading(START + i, "m.p", float(i)) for i in range(10)])
        j.append([Event("blood_pressure", "kiosk", payload={"systolic_mmhg": 120}, ts=START)])
        await j.flush()
        old = sqlite3.connect(tmp_path / "trend.db", isolation_level=None)
        old.executescript(
            "CREATE TABLE minute (point TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,"
            " vmin, vmax, vsum, PRIMARY KEY (point, bucket)) WITHOUT ROWID;"
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, source TEXT, kind TEXT NOT NULL,"
            " severity TEXT, payload TEXT);"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value);"
            "INSERT INTO meta VALUES ('version', 2), ('cursor', 11);"
        )
        old.close()
        trend = TrendIndex(j, str(tmp_path / "trend.db"), idle_interval=0.05)
        await trend.start()
        try:
            assert await trend.caught_up() == 11
        finally:
            await trend.stop()
    finally:
        await j.close()
    assert stored(tmp_path, "SELECT value FROM meta WHERE key = 'version'") == [
        (trend_module.SCHEMA_VERSION,)
    ]
    assert stored(tmp_path, "SELECT kind, privacy FROM events") == [("blood_pressure", 2)]
    assert stored(tmp_path, "SELECT point, sum(n), max(privacy) FROM minute GROUP BY point") == [
        ("m.p", 10, 0)
    ]
