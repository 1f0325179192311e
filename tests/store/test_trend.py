"""The trend index on real SQLite files: its minute buckets equal a GROUP BY of the journal's good
numeric readings (computed here in Python, independently of the follower's SQL), across chunks,
restarts, a `kill -9` of a real `edge run`, a deleted trend file and rows retention removed before
the follower read them; and old buckets are trimmed after keep_history. Its copy of the events
equals the journal's events across chunks, restarts and a schema-1 file, and is trimmed likewise.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edge.model import Event, Reading, Severity
from edge.store import trend as trend_module
from edge.store.journal import Journal
from edge.store.trend import TrendIndex
from tests.rules.test_restart import _start, _stop
from tests.store.helpers import open_journal
from tests.support.site import running_site, site_file
from tests.support.waiting import until, until_sync

Buckets = dict[tuple[str, int], tuple[int, float, float, float]]

SIM = {
    "devices": [
        {
            "id": "meter",
            "driver": "sim",
            "points": [
                {"name": "power", "signal": "random_walk", "min": 0, "max": 100, "interval": "20ms"},
                {"name": "count", "type": "int", "signal": "counter", "interval": "20ms"},
                {"name": "door", "type": "bool", "signal": "toggle", "period": "100ms", "interval": "20ms"},
                {"name": "label", "type": "str", "signal": "constant", "value": "ok", "interval": "20ms"},
            ],
        }
    ]
}


def expected(journal_path: Path, upto: int | None = None) -> Buckets:
    """What the trend must hold: every good numeric (or bool) reading up to seq `upto`, per point
    and minute."""
    conn = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT ts, point, value, quality, kind FROM journal WHERE seq <= ?", (upto or 2**62,)
        ).fetchall()
    finally:
        conn.close()
    acc: dict[tuple[str, int], list[Any]] = {}
    for ts, point, value, quality, kind in rows:
        if kind is not None or quality & 3 or type(value) not in (int, float):
            continue
        key = (point, math.floor(ts / 60))
        a = acc.setdefault(key, [0, value, value, 0.0])
        a[0] += 1
        a[1], a[2] = min(a[1], value), max(a[2], value)
        a[3] += value
    return {k: (a[0], a[1], a[2], a[3]) for k, a in acc.items()}


def held(trend_path: Path) -> Buckets:
    return snapshot(trend_path)[1]


def snapshot(trend_path: Path) -> tuple[int, Buckets]:
    """The follower's cursor and its buckets, read in one transaction."""
    conn = sqlite3.connect(f"file:{trend_path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")
        cursor = int(conn.execute("SELECT value FROM meta WHERE key='cursor'").fetchone()[0])
        rows = conn.execute("SELECT point, bucket, n, vmin, vmax, vsum FROM minute").fetchall()
        conn.execute("COMMIT")
    finally:
        conn.close()
    return cursor, {(p, b): (n, lo, hi, s) for p, b, n, lo, hi, s in rows}


def assert_matches_journal(tmp_path: Path) -> int:
    """The trend file equals the journal's GROUP BY up to the trend's own cursor; returns it."""
    cursor, got = snapshot(tmp_path / "trend.db")
    assert_same(got, expected(tmp_path / "edge.db", cursor))
    return cursor


def assert_same(got: Buckets, want: Buckets) -> None:
    assert set(got) == set(want)
    for key, (n, lo, hi, s) in want.items():
        assert got[key][:3] == (n, lo, hi), key
        assert got[key][3] == pytest.approx(s, rel=1e-9), key


def trend_cursor(trend_path: Path) -> int:
    if not trend_path.exists():
        return 0
    conn = sqlite3.connect(f"file:{trend_path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='cursor'").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:  # created, schema not there yet
        return 0
    finally:
        conn.close()


@asynccontextmanager
async def following(journal: Journal, path: Path, **kw: Any) -> AsyncIterator[TrendIndex]:
    kw.setdefault("idle_interval", 0.05)
    trend = TrendIndex(journal, str(path), **kw)
    await trend.start()
    try:
        yield trend
    finally:
        await trend.stop()


async def test_buckets_equal_a_group_by_of_the_journal_in_a_running_site(tmp_path: Path) -> None:
    now = time.time()
    async with running_site(tmp_path, SIM, web=False) as rt:
        trend = rt.components["trend"]
        assert isinstance(trend, TrendIndex)
        # minutes in the past, bad and stale readings, a string and an event beside the sim's
        rt.hub.ingest(
            [Reading(now - 600 + i * 7.5, "meter.power", float(i % 13), i % 3) for i in range(80)]
            + [Reading(now - 300, "meter.label", "12.5"), Reading(now - 299, "meter.count", 5, 1)]
        )
        rt.hub.publish_event(Event("note", "meter", Severity.INFO, {"value": 1}, now))
        await until(lambda: rt.hub.journaled > 400, what="sim readings journaled")
        flushed = await rt.journal.flush()
        cursor = await trend.caught_up()
        # the sim keeps journaling: the follower reached at least what was committed at the flush
        assert flushed <= cursor <= rt.journal.committed_seq
        status = rt.status()["components"]["trend"]
        assert status["cursor"] >= cursor and status["last_rollup"] is not None
        assert assert_matches_journal(tmp_path) >= cursor
    got = held(tmp_path / "trend.db")
    assert not [k for k in got if k[0] == "meter.label"], "strings are not rolled up"
    assert {k[0] for k in got} == {"meter.power", "meter.count", "meter.door"}
    door = [v for k, v in got.items() if k[0] == "meter.door"]
    assert all(0 <= lo <= hi <= 1 for _n, lo, hi, _s in door), "bools count as 0/1"
    assert any(lo == 0 and hi == 1 for _n, lo, hi, _s in door)


async def test_many_chunks_and_a_restart_count_every_reading_once(tmp_path: Path) -> None:
    t0 = math.floor(time.time() / 60) * 60 - 3600
    j = open_journal(tmp_path, keep_history=None)
    try:
        j.append([Reading(t0 + i * 0.5, f"m.p{i % 7}", float(i), 0) for i in range(5000)])
        await j.flush()
        async with following(j, tmp_path / "trend.db", chunk=700) as trend:
            assert await trend.caught_up() == 5000
        # new readings land in minutes the first run already holds, while no follower runs
        j.append([Reading(t0 + i * 0.5 + 0.25, f"m.p{i % 7}", -float(i), 0) for i in range(3000)])
        await j.flush()
        async with following(j, tmp_path / "trend.db", chunk=700) as trend:
            assert trend.cursor == 5000, "the cursor survives a restart"
            assert await trend.caught_up() == 8000
    finally:
        await j.close()
    want = expected(tmp_path / "edge.db")
    assert sum(v[0] for v in want.values()) == 8000
    assert_same(held(tmp_path / "trend.db"), want)


async def test_the_followers_caches_stay_small(tmp_path: Path) -> None:
    # it reads every row once, forward: SQLite's default 2 MB cache filled with pages never read
    # again, a gateway's RSS rising for hours; a fresh file and a reopened one get the same cap
    j = open_journal(tmp_path, keep_history=None)
    try:
        j.append([Reading(time.time() - 600 + i * 0.01, f"m.p{i % 7}", float(i), 0) for i in range(3000)])
        await j.flush()
        for _ in range(2):
            async with following(j, tmp_path / "trend.db", chunk=700) as trend:
                assert await trend.caught_up() == 3000
                conn = trend._conn
                assert conn is not None
                cap = trend_module.FOLLOWER_JOURNAL_CACHE_KIB
                assert conn.execute("PRAGMA main.cache_size").fetchall() == [(-cap,)]
                assert cap <= 512
                # the index's own pages too, on the follower's and on the charts' connection
                own = trend_module.TREND_CACHE_KIB
                assert conn.execute("PRAGMA trend.cache_size").fetchall() == [(-own,)]
                assert trend._read is not None
                assert trend._read.execute("PRAGMA cache_size").fetchall() == [(-own,)]
                assert own <= 512
    finally:
        await j.close()


async def test_a_deleted_trend_file_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    async with running_site(tmp_path, SIM, web=False) as rt:
        await until(lambda: rt.hub.journaled > 200, what="sim readings journaled")
        await rt.journal.flush()
        await rt.components["trend"].caught_up()  # type: ignore[attr-defined]
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"trend.db{suffix}").unlink(missing_ok=True)
    async with running_site(tmp_path, SIM, web=False) as rt:
        trend = rt.components["trend"]
        assert isinstance(trend, TrendIndex)
        await rt.journal.flush()
        cursor = await trend.caught_up()
        assert cursor >= rt.journal.committed_seq - 100  # only what the sim added meanwhile
        assert assert_matches_journal(tmp_path) >= cursor
    assert any(k[1] for k in held(tmp_path / "trend.db")), "the first run's minutes are back"


async def test_a_trend_file_ahead_of_its_journal_is_rebuilt(tmp_path: Path) -> None:
    """A journal replaced by a younger one (restored, or deleted to start over)."""
    j = open_journal(tmp_path, keep_history=None)
    j.append([Reading(1.7e9 + i, "m.p", float(i), 0) for i in range(100)])
    await j.flush()
    async with following(j, tmp_path / "trend.db") as trend:
        await trend.caught_up()
    await j.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"edge.db{suffix}").unlink(missing_ok=True)
    j = open_journal(tmp_path, keep_history=None)
    try:
        j.append([Reading(1.8e9 + i, "m.q", 2.0, 0) for i in range(10)])
        await j.flush()
        async with following(j, tmp_path / "trend.db") as trend:
            assert await trend.caught_up() == 10
    finally:
        await j.close()
    assert_same(held(tmp_path / "trend.db"), expected(tmp_path / "edge.db"))


async def test_rows_retention_deleted_before_the_follower_read_them_are_skipped(tmp_path: Path) -> None:
    now = time.time()
    j = open_journal(tmp_path, keep_history=3600.0, retention_interval=0.02, retention_chunk=500)
    try:
        j.append([Reading(now - 7200 + i, "m.old", 1.0, 0) for i in range(3000)])  # expires at once
        j.append([Reading(now - 60 + i * 0.01, "m.new", float(i), 0) for i in range(2000)])
        await j.flush()
        await until(lambda: j.counters["retention_deleted"] >= 3000, what="old rows expired")
        async with following(j, tmp_path / "trend.db", chunk=1000) as trend:
            assert await trend.caught_up() == 5000
            assert trend.last_error == ""
    finally:
        await j.close()
    got = held(tmp_path / "trend.db")
    assert {k[0] for k in got} == {"m.new"}
    assert_same(got, expected(tmp_path / "edge.db"))


async def test_buckets_older_than_keep_history_are_trimmed(tmp_path: Path) -> None:
    now = time.time()
    j = open_journal(tmp_path, keep_history=None)
    try:
        j.append([Reading(now - 3 * 3600 + i * 60, "m.p", float(i), 0) for i in range(180)])
        await j.flush()
        async with following(j, tmp_path / "trend.db", keep_history=3600.0) as trend:
            await trend.caught_up()
            await until(lambda: trend.trimmed > 0, what="the first trim")
            assert trend.status()["buckets"] == len(held(tmp_path / "trend.db"))
        buckets = sorted(b for _p, b in held(tmp_path / "trend.db"))
        assert buckets and buckets[0] >= math.floor((now - 3600) / 60)
        assert len(buckets) <= 61
    finally:
        await j.close()


def test_kill_9_of_edge_run_never_double_counts(tmp_path: Path) -> None:
    """SIGKILL while the follower runs, twice; then an in-process run catches up: every reading is
    in its bucket exactly once (cursor and buckets commit in one transaction)."""
    config = site_file(tmp_path, SIM)
    journal, trend_db = tmp_path / "edge.db", tmp_path / "trend.db"
    for _ in range(2):
        start = trend_cursor(trend_db)
        proc = _start(config)
        try:
            until_sync(
                lambda s=start: trend_cursor(trend_db) > s + 200, timeout=30, what="the follower moved"
            )
        finally:
            _stop(proc, signal.SIGKILL)
    assert trend_cursor(trend_db) > 0

    killed_at = trend_cursor(trend_db)

    async def finish() -> None:
        async with running_site(tmp_path, SIM, web=False) as rt:
            await rt.journal.flush()
            await rt.components["trend"].caught_up()  # type: ignore[attr-defined]
            assert assert_matches_journal(tmp_path) >= killed_at

    asyncio.run(finish())
    assert journal.exists()


async def test_a_damaged_trend_file_is_replaced_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "trend.db").write_bytes(b"this is not a SQLite file" * 100)
    async with running_site(tmp_path, SIM, web=False) as rt:
        trend = rt.components["trend"]
        assert isinstance(trend, TrendIndex)
        await until(lambda: rt.hub.journaled > 50, what="sim readings journaled")
        await rt.journal.flush()
        await trend.caught_up()
        assert assert_matches_journal(tmp_path) > 0


def read_only(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def journal_events(journal_path: Path) -> list[tuple[Any, ...]]:
    cols = "seq, ts, point, kind, severity, payload"
    return read_only(journal_path, f"SELECT {cols} FROM journal WHERE kind IS NOT NULL ORDER BY seq")


def held_events(trend_path: Path) -> list[tuple[Any, ...]]:
    return read_only(trend_path, "SELECT seq, ts, source, kind, severity, payload FROM events ORDER BY seq")


def mixed(t0: float, n: int, sign: float = 1.0) -> list[Any]:
    """Readings with an event every 37 records."""
    return [
        Event("alert", f"rule:r{i % 5}", Severity.WARNING, {"state": "fired", "i": i}, t0 + i * 0.5)
        if i % 37 == 0
        else Reading(t0 + i * 0.5, f"m.p{i % 7}", sign * i, 0)
        for i in range(n)
    ]


async def test_events_are_copied_once_across_chunks_and_a_restart(tmp_path: Path) -> None:
    t0 = time.time() - 3600
    j = open_journal(tmp_path, keep_history=None)
    try:
        j.append(mixed(t0, 5000))
        await j.flush()
        async with following(j, tmp_path / "trend.db", chunk=700) as trend:
            assert await trend.caught_up() == 5000
        j.append(mixed(t0 + 1, 3000, -1.0))
        await j.flush()
        async with following(j, tmp_path / "trend.db", chunk=700) as trend:
            assert await trend.caught_up() == 8000
    finally:
        await j.close()
    want = journal_events(tmp_path / "edge.db")
    assert len(want) == 136 + 82
    assert held_events(tmp_path / "trend.db") == want
    assert_same(held(tmp_path / "trend.db"), expected(tmp_path / "edge.db"))


async def test_events_older_than_keep_history_are_trimmed(tmp_path: Path) -> None:
    now = time.time()
    j = open_journal(tmp_path, keep_history=None)
    try:
        j.append(
            [Event("alert", "rule:r", Severity.CRITICAL, {"h": h}, now - h * 3600) for h in (5, 3, 0.5, 0)]
        )
        await j.flush()
        async with following(j, tmp_path / "trend.db", keep_history=3600.0) as trend:
            await trend.caught_up()
            await until(lambda: trend.events_trimmed > 0, what="the first trim")
            assert trend.status()["events"] == 2 and trend.status()["events_trimmed"] == 2
    finally:
        await j.close()
    assert [json.loads(e[5])["h"] for e in held_events(tmp_path / "trend.db")] == [0.5, 0]


async def test_a_trend_file_of_schema_1_is_rebuilt_with_the_events(tmp_path: Path) -> None:
    """A trend.db from before the events table, caught up: the new follower starts over."""
    now = time.time()
    j = open_journal(tmp_path, keep_history=None)
    try:
        j.append(mixed(now - 600, 400))
        await j.flush()
        old = sqlite3.connect(tmp_path / "trend.db", isolation_level=None)
        old.executescript(
            "CREATE TABLE minute (point TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,"
            " vmin, vmax, vsum, PRIMARY KEY (point, bucket)) WITHOUT ROWID;"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value);"
            "INSERT INTO meta VALUES ('version', 1), ('cursor', 400);"
        )
        old.close()
        async with following(j, tmp_path / "trend.db") as trend:
            assert await trend.caught_up() == 400
    finally:
        await j.close()
    assert len(held_events(tmp_path / "trend.db")) == 11
    assert held_events(tmp_path / "trend.db") == journal_events(tmp_path / "edge.db")
    assert_same(held(tmp_path / "trend.db"), expected(tmp_path / "edge.db"))


async def test_what_is_staged_reaches_trend_db_with_its_cursor_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are aggregated in memory and merged into trend.db every FLUSH_SEQ seqs or at the
    journal's end. A follower that dies between two merges leaves trend.db at its last merge, and
    the next one neither counts the lost stage twice nor skips it; rows of the same minute staged
    in several chunks merge into one bucket."""
    monkeypatch.setattr(trend_module, "FLUSH_SEQ", 2000)
    t0 = math.floor(time.time() / 60) * 60 - 3600
    j = open_journal(tmp_path, keep_history=None)
    try:
        j.append([Reading(t0 + i * 0.5, f"m.p{i % 7}", float(i % 101), 0) for i in range(5000)])
        j.append([Event("alert", "rule-1", "warning", {"i": i}, t0 + i) for i in range(0, 5000, 499)])
        j.append([Reading(t0 + i * 0.5, f"m.p{i % 7}", float(i % 13), 0) for i in range(1000)])
        await j.flush()
    finally:
        await j.close()
    journal, trend_path = str(tmp_path / "edge.db"), str(tmp_path / "trend.db")
    conn = trend_module.open_follower(journal, trend_path)
    cursors = []
    for _ in range(4):  # 4 chunks of 700 seqs: one merge at 2100, 700 staged after it
        cursors.append(trend_module.rollup_chunk(conn, 700)[0])
    assert cursors == [0, 0, 2100, 2100]
    assert snapshot(tmp_path / "trend.db")[0] == 2100
    assert_matches_journal(tmp_path)
    conn.close()  # the stage of seqs 2101-2800 is lost with it
    conn = trend_module.open_follower(journal, trend_path)
    try:
        cursor, top = 0, 1
        while cursor < top:
            cursor, top = trend_module.rollup_chunk(conn, 700)
        events = conn.execute("SELECT seq FROM trend.events ORDER BY seq").fetchall()
    finally:
        conn.close()
    assert cursor == top == 6011
    want = expected(tmp_path / "edge.db")
    assert sum(v[0] for v in want.values()) == 6000
    assert_same(held(tmp_path / "trend.db"), want)
    assert [s for (s,) in events] == list(range(5001, 5012))
