"""Trend index benchmark: the follower's rollup rate beside the same GROUP BY fetched into Python
(the aggregation alone, without the upsert into trend.db) measured in the same run, with the copy
of the events (one row in EVENT_EVERY is an event) and without it; the latency
of a 24-hour history query answered from the buckets, beside a scan of the whole journal for that
point (what answering it without the index would take), and of the newest 200 alerts from the
index beside a scan of the whole journal for them; and ingest through hub -> journal with
the follower running and without it, each beside the raw `executemany` floor of bench.ingest.

    python -m bench.trend [--quick]

Full: 500 points x 1 reading/s x 24 h (43.2 M rows); --quick: 200 points, one reading per 10 s.
The last line is one JSON object with the figures and "ratio" (rollup rate / GROUP BY floor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

from bench import ingest
from edge.store import trend as trend_module
from edge.store.journal import EVENT_SQL, READING_SQL, Journal
from edge.store.rows import EventMatch, connect
from edge.store.schema import migrate
from edge.store.trend import (
    CHUNK_SEQ,
    READINGS_WHERE,
    TrendIndex,
    history_buckets,
    open_follower,
    rollup_chunk,
)

DAY = 86400
EVENT_EVERY = 1000  # a busy site: 1,000 points at 1 s and an event a second


def build_journal(path: Path, points: int, step: int) -> tuple[int, float]:
    """A journal file holding `points` points, one reading every `step` seconds over 24 h; every
    EVENT_EVERY-th row is an alert instead."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    migrate(conn, str(path))
    t0 = time.time() - DAY
    names = [f"meter-{p // 10}.p{p % 10}" for p in range(points)]
    seq = 0
    for j, k in enumerate(range(0, DAY, step)):
        rows = [
            (seq + i + 1, t0 + k + i / points, name, float((k + i) % 997), 0) for i, name in enumerate(names)
        ]
        events = [
            (
                s,
                ts,
                f"rule:{name}",
                "alert",
                "warning",
                json.dumps({"state": "fired", "point": name, "value": v}),
            )
            for s, ts, name, v, _q in rows
            if s % EVENT_EVERY == 0
        ]
        seq += len(rows)
        if not conn.in_transaction:
            conn.execute("BEGIN")
        conn.executemany(READING_SQL, [r for r in rows if r[0] % EVENT_EVERY])
        conn.executemany(EVENT_SQL, events)
        if j % 200 == 199:
            conn.execute("COMMIT")
    if conn.in_transaction:
        conn.execute("COMMIT")
    conn.execute("UPDATE meta SET value=? WHERE key='last_seq'", (seq,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return seq, t0


def rollup(path: Path, trend_path: Path, events: bool = True) -> float:
    """The follower's work, chunk by chunk, from an empty trend file; seconds. Without `events`
    the copy of the events (staged per chunk, merged with the buckets) is a no-op statement."""
    conn = open_follower(str(path), str(trend_path))
    start = time.perf_counter()
    cursor, top = 0, 1
    with mock.patch.object(trend_module, "EVENTS_SQL", trend_module.EVENTS_SQL if events else "SELECT ?, ?"):
        while cursor < top:
            cursor, top = rollup_chunk(conn, CHUNK_SEQ)
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def group_by_floor(path: Path, rows: int) -> float:
    """The same aggregation over the same chunks, fetched into Python instead of upserted; seconds."""
    conn = connect(str(path), readonly=True)
    sql = (
        "SELECT point, CAST(ts / 60 AS INTEGER), count(*), min(value), max(value), sum(value) "
        f"FROM journal WHERE seq > ? AND seq <= ? AND {READINGS_WHERE} GROUP BY 1, 2"
    )
    start = time.perf_counter()
    for lo in range(0, rows, CHUNK_SEQ):
        conn.execute(sql, (lo, lo + CHUNK_SEQ)).fetchall()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def timed(fn: Any, *args: Any, repeat: int = 5) -> float:
    """Median milliseconds of `repeat` calls."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


async def query_latency(path: Path, trend_path: Path, point: str, t0: float) -> dict[str, float]:
    journal = Journal.open_readonly(str(path))
    trend = TrendIndex(journal, str(trend_path))
    await trend.start()
    # the scans the index saves: the same questions asked of the journal file on a bare connection
    bare = sqlite3.connect(f"file:{journal.path}?mode=ro", uri=True, check_same_thread=False)

    def scan(sql: str, args: tuple[Any, ...]) -> list[Any]:
        return bare.execute(sql, args).fetchall()

    try:
        now = time.time()
        hours = await asyncio.to_thread(timed, history_buckets, trend, point, t0, now, True, 1000, 0)
        minutes = await asyncio.to_thread(timed, history_buckets, trend, point, t0, now, False, 2000, 0)
        full_scan = await asyncio.to_thread(
            timed,
            scan,
            "SELECT ts, value FROM journal WHERE point = ? AND kind IS NULL AND ts >= ?",
            (point, t0),
            repeat=1,
        )
        alerts = await asyncio.to_thread(timed, trend.read_events, EventMatch(kind="alert"), 200)
        alerts_scan = await asyncio.to_thread(
            timed,
            scan,
            "SELECT seq FROM journal WHERE kind = 'alert' AND ts >= ? ORDER BY seq DESC LIMIT 200",
            (t0 + DAY,),  # none that new: the whole journal is read
            repeat=1,
        )
    finally:
        bare.close()
        await trend.stop()
        journal.close_sync()
    return {
        "hour_ms": hours,
        "minute_ms": minutes,
        "full_scan_ms": full_scan,
        "alerts_ms": alerts,
        "alerts_scan_ms": alerts_scan,
    }


class FollowedJournal(Journal):
    """bench.ingest's journal with a trend follower on it, as in a running site. On close it
    notes how far the follower had come, and how long it took to catch up after the burst."""

    trend: TrendIndex | None = None
    followed: list[tuple[int, int, float]] = []  # (cursor at the end of the burst, committed, catch-up s)

    def open(self) -> FollowedJournal:
        super().open()
        self.trend = TrendIndex(self, str(Path(self.path).with_name("trend.db")))
        self._starting = asyncio.get_running_loop().create_task(self.trend.start())
        return self

    async def close(self) -> None:
        await self._starting
        assert self.trend is not None
        cursor, start = self.trend.cursor, time.perf_counter()
        await self.trend.caught_up(timeout=120)
        self.followed.append((cursor, self.committed_seq, time.perf_counter() - start))
        await self.trend.stop()
        await super().close()


async def ingest_rates(d: Path, n: int) -> tuple[float, float]:
    """Readings/s through hub -> journal without, then with the follower (alternated, best of 2)."""
    without: list[float] = []
    with_follower: list[float] = []
    for k in range(2):
        for follow, out in ((False, without), (True, with_follower)):
            path = d / f"ingest-{k}-{int(follow)}" / "edge.db"
            path.parent.mkdir()
            if follow:
                with mock.patch.object(ingest, "Journal", FollowedJournal):
                    rate, _ = await ingest.pipeline(path, n)
            else:
                rate, _ = await ingest.pipeline(path, n)
            out.append(rate)
    return max(without), max(with_follower)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (under a minute)")
    args = ap.parse_args()
    points, step = (200, 10) if args.quick else (500, 1)
    n_ingest = 2_000_000 if args.quick else 6_000_000  # long enough for several follower rounds
    with tempfile.TemporaryDirectory(prefix="bench-trend-") as tmp:
        d = Path(tmp)
        rows, t0 = build_journal(d / "edge.db", points, step)
        floor_s = group_by_floor(d / "edge.db", rows)
        plain_s = rollup(d / "edge.db", d / "trend-without-events.db", events=False)
        rollup_s = rollup(d / "edge.db", d / "trend.db")
        trend_mib = sum(p.stat().st_size for p in d.glob("trend.db*")) / 2**20
        latency = asyncio.run(query_latency(d / "edge.db", d / "trend.db", "meter-7.p3", t0))
        ingest_floor = ingest.floor(d / "floor.db", 600_000)
        without, with_follower = asyncio.run(ingest_rates(d, n_ingest))
    rate, floor_rate, plain_rate = rows / rollup_s, rows / floor_s, rows / plain_s
    ratio = rate / floor_rate
    print(
        f"journal: {points} points x 1 reading/{step} s x 24 h = {rows:,} rows; trend.db {trend_mib:.1f} MiB"
    )
    print(f"floor: the same GROUP BY fetched into Python   {floor_rate:>12,.0f} rows/s")
    print(
        f"rollup into trend.db (upsert, events, cursor)  {rate:>12,.0f} rows/s   ratio {ratio:.2f}; "
        f"without the events' copy {plain_rate:,.0f} rows/s ({rows // EVENT_EVERY:,} events)"
    )
    print(
        f"24 h history of one point: hour buckets {latency['hour_ms']:.1f} ms, minute buckets "
        f"{latency['minute_ms']:.1f} ms; scanning the whole journal instead {latency['full_scan_ms']:.0f} ms"
    )
    print(
        f"newest 200 alerts from the index {latency['alerts_ms']:.1f} ms; "
        f"scanning the whole journal for alerts {latency['alerts_scan_ms']:.0f} ms"
    )
    print(
        f"ingest hub -> journal: {without:,.0f} readings/s without the follower (ratio "
        f"{without / ingest_floor:.2f}), {with_follower:,.0f} with it (ratio {with_follower / ingest_floor:.2f}); "
        f"floor {ingest_floor:,.0f} rows/s"
    )
    cursor, committed, catch_up = FollowedJournal.followed[-1]
    print(
        f"the follower had rolled up {cursor / committed:.0%} of the burst when it ended, "
        f"and caught up {catch_up:.1f} s later"
    )
    print(
        json.dumps(
            {
                "rows": rows,
                "rollup_rows_per_s": round(rate),
                "group_by_floor_rows_per_s": round(floor_rate),
                "ratio": round(ratio, 3),
                "rollup_without_events_rows_per_s": round(plain_rate),
                "events": rows // EVENT_EVERY,
                "alerts_200_ms": round(latency["alerts_ms"], 2),
                "alerts_scan_ms": round(latency["alerts_scan_ms"], 1),
                "history_24h_hour_ms": round(latency["hour_ms"], 2),
                "history_24h_minute_ms": round(latency["minute_ms"], 2),
                "full_scan_ms": round(latency["full_scan_ms"], 1),
                "trend_mib": round(trend_mib, 1),
                "ingest_without_follower": round(without),
                "ingest_with_follower": round(with_follower),
                "ingest_floor": round(ingest_floor),
                "ingest_ratio_without": round(without / ingest_floor, 3),
                "ingest_ratio_with": round(with_follower / ingest_floor, 3),
                "follower_share_at_burst_end": round(cursor / committed, 3),
                "catch_up_s": round(catch_up, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
