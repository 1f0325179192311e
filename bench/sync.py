"""Sync benchmark: drain a backlog of readings from the journal to a local HTTP receiver, beside
the floor of encoding + gzip + POST of the same rows without the journal (same encoder, same
receiver, one batch in flight), measured in the same run; then the pull API's rows/s for a
consumer catching up (in a process of its own, as a central platform is; it acks each page with
`ack=true` in its request for the next, and a second consumer with a POST .../ack a page) beside a
paged SELECT of the same journal (alternated, 5 rounds, medians; CPU per row is the gateway's
alone), and a consumer catching up on a stream with 1 % events (vehicle passages) and a personal
point, beside its own paged SELECT and the same pull with every page read row by row (alternated,
3 rounds); then the same drain over a
high-latency link (a receiver that holds every answer 100 ms, 50 ms with --quick: a 4G or
satellite round trip) with max_in_flight 1, 4 and 8 and batches of 5000, and with the sink's
default settings (one batch in flight, batches sized by the link up to batch.max_items).

    python -m bench.sync [--quick]

The receivers run in their own processes (they decompress and parse every batch). The last line
is one JSON object with the figures and "ratio" (drain / floor at the default max_in_flight 1
over the fast receiver; target >= 0.5); "latency_drain_rows_per_s" holds the slow link's drain
rate per max_in_flight, "latency_default_rows_per_s" the default sink's (target >= 0.5 of the
floor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import yaml

BATCH = 5000
POINTS = 500
IN_FLIGHT = (1, 4, 8)  # max_in_flight values drained over the high-latency receiver


def rows_for(n: int) -> list[tuple[object, ...]]:
    """Journal-shaped rows (seq, ts, point, value, quality, kind, severity, payload)."""
    t0 = 1.7e9
    return [
        (i + 2, t0 + i * 0.01, f"dev{i % 50}.p{i % POINTS}", float(i % 1000) * 0.5, 0, None, None, None)
        for i in range(n)
    ]


def receiver_main(port: int, delay: float) -> None:
    import orjson
    from aiohttp import web

    count = {"rows": 0}

    async def ingest(request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        count["rows"] += len(doc["readings"]) + len(doc["events"])
        if delay:
            await asyncio.sleep(delay)  # the link's round trip, on top of the local one
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(count)

    async def run() -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/ingest", ingest)
        app.router.add_get("/stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        print(f"PORT {site._server.sockets[0].getsockname()[1]}", flush=True)  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(run())


def start_receiver(delay: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sync", "--receiver", "--delay", str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"receiver did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/ingest"


async def floor(url: str, rows: list[tuple[object, ...]]) -> tuple[float, float]:
    """The same encoder, gzip and POST, one batch in flight, rows already in memory."""
    from edge.sync.http_sink import encode_batch

    async with aiohttp.ClientSession() as http:
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(rows), BATCH):
            part = rows[i : i + BATCH]
            body = zlib.compress(encode_batch("bench", "floor", part, part[0][0], part[-1][0]), 6, wbits=31)  # type: ignore[arg-type]
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            async with http.post(url, data=body, headers=headers) as r:
                assert r.status == 204
        return len(rows) / (time.perf_counter() - start), (time.process_time() - cpu) / len(rows)


EVENTS_EVERY = 100  # the stream with events: one record in 100 a vehicle passage
PLATE_EVERY = 5000  # ...and one in 5000 the gate's last plate (a personal point)


def fill_journal(path: str, n: int, events: bool = False) -> int:
    """`n` readings of POINTS points; with `events`, one record in EVENTS_EVERY a vehicle passage
    naming a plate and one in PLATE_EVERY a reading of `gate.last_plate` instead."""
    from edge.model import Event, Reading
    from edge.store.journal import Journal

    def record(i: int) -> Reading | Event:
        ts = t0 + i * 0.01
        if events and i % EVENTS_EVERY == 7:
            return Event("vehicle_passage", "gate", "info", {"plate": f"A{i % 9973:05d}", "lane": 1}, ts)
        if events and i % PLATE_EVERY == 13:
            return Reading(ts, "gate.last_plate", f"A{i % 9973:05d}")
        return Reading(ts, f"dev{i % 50}.p{i % POINTS}", float(i % 1000) * 0.5)

    t0 = 1.7e9

    async def go() -> int:
        j = Journal(path, flush_max_items=50_000).open()
        j.append([Event("bench_started", "bench", "info", {}, 1.7e9)])
        for start in range(0, n, 50_000):
            j.append([record(i) for i in range(start, min(n, start + 50_000))])
            await j.flush()
        seq = await j.flush()
        await j.close()
        return seq

    return asyncio.run(go())


async def start_site(tmp: Path, db: Path, url: str, **site: object) -> Any:
    """A runtime over the journal `db` with one push sink `central` to `url`, started."""
    from edge.config import load_site
    from edge.runtime import Runtime

    sink = {"id": "central", "type": "http", "url": url, "batch": {"max_items": BATCH, "max_age": "1s"}}
    sink.update(site.pop("sink", {}))  # type: ignore[call-overload]
    path = tmp / "site.yaml"
    doc = {"site": {"id": "bench"}, "storage": {"path": str(db)}, "web": {"listen": "127.0.0.1:0"}}
    path.write_text(yaml.safe_dump({**doc, "upstream": [sink], **site}))
    rt = Runtime(load_site(path))
    await rt.start()
    return rt


async def drain(rt: Any, committed: int) -> tuple[float, float]:
    """Rows/s and CPU s/row of the sink draining the backlog, from the moment the runtime is up
    (its start-up is not the drain's cost)."""
    sink = rt.components["sync"].sinks["central"]
    start, cpu, done = time.perf_counter(), time.process_time(), sink.cursor
    await sink.wait_cursor(committed)
    return (committed - done) / (time.perf_counter() - start), (time.process_time() - cpu) / (
        committed - done
    )


def catch_up_trend(journal: Path) -> None:
    """Roll the whole journal into its trend index, as the gateway does while it journals: the
    backlog of a link that was down is behind upstream only, not behind the trend follower (else
    the runtime's follower would roll 200k rows up on the same two cores during the drain)."""
    from edge.store import trend

    conn = trend.open_follower(str(journal), trend.default_path(str(journal)))
    try:
        while True:
            cursor, top = trend.rollup_chunk(conn)
            if cursor >= top:
                break
    finally:
        conn.close()


def copy(src: Path, dst: Path) -> None:
    """The journal `src` and its trend index, into `dst` (a journal path in another folder)."""
    from edge.store.trend import default_path

    dst.parent.mkdir(parents=True, exist_ok=True)
    for a_path, b_path in ((src, dst), (Path(default_path(str(src))), Path(default_path(str(dst))))):
        with sqlite3.connect(a_path) as a, sqlite3.connect(b_path) as b:
            a.backup(b)


async def drain_over_latency(
    tmp: Path, url: str, committed: int, sink: dict[str, object]
) -> tuple[float, int]:
    """The drain over the slow receiver, from a copy of the journal as filled (no cursor yet),
    with these sink settings; also the batch size the sink ended with."""
    run = tmp / "latency"
    copy(tmp / "filled" / "edge.db", run / "edge.db")
    rt = await start_site(run, run / "edge.db", url, sink=sink)
    rate, _cpu = await drain(rt, committed)
    items = rt.components["sync"].sinks["central"].batch_items()
    await rt.stop()
    shutil.rmtree(run)
    return rate, items


PULL_ROUNDS = 5  # pull catch-ups, each beside its own paged SELECT; the figures are medians
PULL_TOKEN = "bench-pull-token-{}-0123456789"


# The consumer: a central platform reading over the network, so a process of its own (as the
# receivers are): it pages the whole journal from 0, 10k a page, parses each page and acks it (a
# consumer catching up after an outage); prints its rows, seconds and CPU seconds. Mode "next"
# acks each page in the request for the next one (`ack=true`, the loop docs/sync.md shows) and the
# last with POST .../ack; mode "post" acks every page with its own POST .../ack.
PULL_CONSUMER = """
import asyncio, sys, time
import aiohttp, orjson
base, consumer, token, mode = sys.argv[1:5]
async def main():
    got = 0
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        start, cpu = time.perf_counter(), time.process_time()
        after, more, ack = 0, True, ""
        while more:
            async with http.get(f"{base}/stream?after={after}&limit=10000{ack}") as r:
                assert r.status == 200, r.status
                page = orjson.loads(await r.read())
            got += len(page["items"])
            after, more = page["next"], page["more"]
            if mode == "next" and more:
                ack = "&ack=true"
                continue
            async with http.post(f"{base}/consumers/{consumer}/ack", json={"seq": after}) as r:
                assert r.status == 200, r.status
        print(got, time.perf_counter() - start, time.process_time() - cpu)
asyncio.run(main())
"""


async def pull_catch_up(base: str, consumer: str, token: str, mode: str) -> tuple[float, float, float]:
    """Rows/s of `consumer` paging the whole journal through the pull API, with the CPU s/row of
    the gateway (this process, all threads) and of the consumer (its process) apart: the
    consumer's parsing of what it reads is its own machine's work, not the gateway's."""
    cpu = time.process_time()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PULL_CONSUMER, base, consumer, token, mode, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    gateway_cpu = time.process_time() - cpu
    if child.returncode != 0:
        raise SystemExit(f"the pull consumer failed with {child.returncode}")
    got, seconds, consumer_cpu = out.split()
    rows = int(got)
    return rows / float(seconds), gateway_cpu / rows, float(consumer_cpu) / rows


def paged_select(db: Path) -> tuple[float, float]:
    """The floor: the stream's own SELECT, 10k rows a page, on a connection of its own."""
    from edge.store.journal import SELECT_COLS, connect

    conn = connect(str(db))
    start, cpu = time.perf_counter(), time.process_time()
    after, n = 0, 0
    while True:
        rows = conn.execute(
            f"SELECT {SELECT_COLS} FROM journal WHERE seq > ? ORDER BY seq LIMIT 10000", (after,)
        ).fetchall()
        if not rows:
            break
        n += len(rows)
        after = rows[-1][0]
    rate, cpu_per_row = n / (time.perf_counter() - start), (time.process_time() - cpu) / n
    conn.close()
    return rate, cpu_per_row


async def drain_and_pull(
    tmp: Path, url: str, committed: int
) -> tuple[
    float, float, dict[str, list[tuple[float, float, float]]], list[tuple[float, float]], dict[str, int]
]:
    """The sink's drain, then PULL_ROUNDS rounds of consumers catching up (new consumers each
    round, so each pages from 0), one acking in its next request and one with POST .../ack, beside
    the paged SELECT, all with the runtime up: the machine is shared, so each pull has its floor
    measured a moment later, not minutes apart."""
    consumers = []
    for k in range(2 * PULL_ROUNDS):
        os.environ[f"BENCH_PULL_TOKEN_{k}"] = PULL_TOKEN.format(k)
        consumers.append({"id": f"city{k}", "token_env": f"BENCH_PULL_TOKEN_{k}"})
    # the rows the rounds page must stay put: no history expires while the consumers ack
    storage = {"path": str(tmp / "edge.db"), "keep_history": "3650d"}
    rt = await start_site(tmp, tmp / "edge.db", url, consumers=consumers, storage=storage)
    drain_rate, drain_cpu = await drain(rt, committed)
    base = f"http://127.0.0.1:{rt.web_port}/api/v1"
    pulls: dict[str, list[tuple[float, float, float]]] = {"next": [], "post": []}
    selects = []
    for k in range(PULL_ROUNDS):
        pulls["next"].append(await pull_catch_up(base, f"city{k}", PULL_TOKEN.format(k), "next"))
        selects.append(paged_select(tmp / "edge.db"))
        j = PULL_ROUNDS + k
        pulls["post"].append(await pull_catch_up(base, f"city{j}", PULL_TOKEN.format(j), "post"))
    from edge.api.pull import PULL_KEY

    svc = rt.web_runner.app[PULL_KEY]
    ahead = {
        "served": svc.read_ahead_served,
        "read_again": svc.read_ahead_stale,
        "unused": svc.read_ahead_missed,
    }
    await rt.stop()
    return drain_rate, drain_cpu, pulls, selects, ahead


EVENT_ROUNDS = 3  # pulls of the stream with events, each beside a paged SELECT and a row-read pull


async def pull_events(tmp: Path, url: str, n: int) -> dict[str, Any]:
    """A consumer catching up on a stream with 1 % events and a personal point (most 10k pages
    hold a few rows that are not plain readings), beside its own paged SELECT and the same pull
    with every page read row by row (`mixed_share` 0), alternated; the sink drains first."""
    from edge.api.pull import MIXED_SHARE, PULL_KEY
    from edge.model import PointInfo, PointType, Privacy

    run = tmp / "events"
    run.mkdir()
    committed = await asyncio.to_thread(fill_journal, str(run / "edge.db"), n, True)  # a loop of its own
    consumers = []
    for k in range(2 * EVENT_ROUNDS):
        os.environ[f"BENCH_EVENTS_TOKEN_{k}"] = PULL_TOKEN.format(f"events{k}")
        consumers.append({"id": f"events{k}", "token_env": f"BENCH_EVENTS_TOKEN_{k}"})
    storage = {"path": str(run / "edge.db"), "keep_history": "3650d"}
    rt = await start_site(run, run / "edge.db", url, consumers=consumers, storage=storage)
    plate = PointInfo("gate.last_plate", "gate", "last_plate", type=PointType.STR, privacy=Privacy.PERSONAL)
    rt.hub.register_points([plate])
    await drain(rt, committed)
    svc = rt.web_runner.app[PULL_KEY]
    base = f"http://127.0.0.1:{rt.web_port}/api/v1"
    mixed, selects, rows = [], [], []
    for k in range(EVENT_ROUNDS):
        svc.mixed_share = MIXED_SHARE
        mixed.append(await pull_catch_up(base, f"events{k}", PULL_TOKEN.format(f"events{k}"), "next"))
        selects.append(paged_select(run / "edge.db"))
        svc.mixed_share = 0.0
        j = EVENT_ROUNDS + k
        rows.append(await pull_catch_up(base, f"events{j}", PULL_TOKEN.format(f"events{j}"), "next"))
    mixed_pages = svc.mixed_pages
    await rt.stop()
    shutil.rmtree(run)
    return {
        "rows_per_s": round(statistics.median(p[0] for p in mixed)),
        "ratio": round(statistics.median(p[0] / q[0] for p, q in zip(mixed, selects, strict=True)), 3),
        "row_read_rows_per_s": round(statistics.median(p[0] for p in rows)),
        "row_read_ratio": round(
            statistics.median(p[0] / q[0] for p, q in zip(rows, selects, strict=True)), 3
        ),
        "mixed_vs_row_read": round(
            statistics.median(p[0] / r[0] for p, r in zip(mixed, rows, strict=True)), 3
        ),
        "gateway_cpu_us_per_row": round(statistics.median(p[1] for p in mixed) * 1e6, 3),
        "row_read_gateway_cpu_us_per_row": round(statistics.median(p[1] for p in rows) * 1e6, 3),
        "mixed_pages": mixed_pages,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200,000 readings instead of 1,000,000")
    ap.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receiver:
        receiver_main(args.port, args.delay)
        return
    n = 200_000 if args.quick else 1_000_000
    latency = 0.05 if args.quick else 0.1
    proc, url = start_receiver()
    slow_proc, slow_url = start_receiver(latency)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as d:
            tmp = Path(d)
            t = time.perf_counter()
            committed = fill_journal(str(tmp / "edge.db"), n)
            fill_s = time.perf_counter() - t
            catch_up_trend(tmp / "edge.db")
            copy(tmp / "edge.db", tmp / "filled" / "edge.db")
            rows = rows_for(n)
            floor_before, cpu_before = asyncio.run(floor(url, rows))
            drain, drain_cpu, both, selects, ahead = asyncio.run(drain_and_pull(tmp, url, committed))
            events = asyncio.run(pull_events(tmp, url, n))
            # the machine is shared: measure the floor on both sides of the drain, keep the higher
            floor_after, cpu_after = asyncio.run(floor(url, rows))
            floor_rate = max(floor_before, floor_after)
            floor_cpu = min(cpu_before, cpu_after)
            over_latency = {
                k: asyncio.run(drain_over_latency(tmp, slow_url, committed, {"max_in_flight": k}))[0]
                for k in IN_FLIGHT
            }
            # the sink entry without batch: or max_in_flight: keys
            default_rate, default_items = asyncio.run(
                drain_over_latency(tmp, slow_url, committed, {"batch": {}})
            )
    finally:
        for p in (proc, slow_proc):
            p.terminate()
            p.wait(10)
    ratio = drain / floor_rate
    pulls, posts = both["next"], both["post"]  # the headline: acks in the next page's request
    pull, select_rate = statistics.median(p[0] for p in pulls), statistics.median(q[0] for q in selects)
    pull_ratio = statistics.median(p[0] / q[0] for p, q in zip(pulls, selects, strict=True))
    post_ratio = statistics.median(p[0] / q[0] for p, q in zip(posts, selects, strict=True))
    # CPU per row does not move with the other processes' load as the rates do
    pull_cpu_ratio = statistics.median(q[1] / p[1] for p, q in zip(pulls, selects, strict=True))
    print(f"backlog: {committed:,} records (filled in {fill_s:.1f}s); batches of {BATCH}, gzip level 6")
    print(
        f"floor: encode + gzip + POST, rows in memory   {floor_rate:>12,.0f} rows/s (best of {floor_before:,.0f} before and {floor_after:,.0f} after the drain)"
    )
    print(f"sink drain from the journal                  {drain:>12,.0f} rows/s")
    print(
        f"ratio {ratio:.2f} (target >= 0.50); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"CPU per row (gateway process, all threads): floor {floor_cpu * 1e6:.2f} us, drain {drain_cpu * 1e6:.2f} us "
        f"(cpu_ratio {floor_cpu / drain_cpu:.2f}: the load-independent figure)"
    )
    print(
        f"pull API, consumer catching up (10k pages, each acked with ack=true in the next request) "
        f"{pull:>12,.0f} rows/s "
        f"(median of {PULL_ROUNDS}: {min(p[0] for p in pulls):,.0f}-{max(p[0] for p in pulls):,.0f})"
    )
    print(
        f"  beside a paged SELECT of the journal       {select_rate:>12,.0f} rows/s "
        f"({min(q[0] for q in selects):,.0f}-{max(q[0] for q in selects):,.0f}); "
        f"ratio {pull_ratio:.2f} (median of the rounds' own; target >= 0.60)"
    )
    print(
        f"  acking each page with its own POST .../ack: {statistics.median(p[0] for p in posts):,.0f} rows/s, "
        f"ratio {post_ratio:.2f}"
    )
    print(
        f"  CPU per row: pull {statistics.median(p[1] for p in pulls) * 1e6:.2f} us in the gateway "
        f"(and {statistics.median(p[2] for p in pulls) * 1e6:.2f} us in the consumer's process), "
        f"SELECT {statistics.median(q[1] for q in selects) * 1e6:.2f} us (cpu_ratio {pull_cpu_ratio:.2f})"
    )
    print(
        f"  pages served as read ahead {ahead['served']} (read again: {ahead['read_again']}, "
        f"not asked for: {ahead['unused']})"
    )
    print(
        f"pull API on a stream with 1 % events, consumer catching up {events['rows_per_s']:>12,.0f} rows/s "
        f"(ratio {events['ratio']:.2f} beside its own paged SELECT; median of {EVENT_ROUNDS})"
    )
    print(
        f"  the same with every page read row by row   {events['row_read_rows_per_s']:>12,.0f} rows/s "
        f"(ratio {events['row_read_ratio']:.2f}); mixed / row read {events['mixed_vs_row_read']:.2f}; "
        f"gateway CPU per row {events['gateway_cpu_us_per_row']:.2f} vs "
        f"{events['row_read_gateway_cpu_us_per_row']:.2f} us; {events['mixed_pages']} pages read mixed"
    )
    print(
        f"sink drain over a {latency * 1000:.0f} ms round trip (one batch in flight caps it at "
        f"{BATCH / latency:,.0f} rows/s), beside the floor above:"
    )
    for k, rate in over_latency.items():
        print(
            f"  max_in_flight {k:<2}                             {rate:>12,.0f} rows/s ({rate / floor_rate:.2f})"
        )
    print(
        f"  default settings (1 in flight, sized by link) {default_rate:>11,.0f} rows/s "
        f"({default_rate / floor_rate:.2f}; target >= 0.50; ended at {default_items:,} records a batch)"
    )
    print(
        json.dumps(
            {
                "records": committed,
                "drain_rows_per_s": round(drain),
                "floor_rows_per_s": round(floor_rate),
                "floor_before": round(floor_before),
                "floor_after": round(floor_after),
                "ratio": round(ratio, 3),
                "cpu_ratio": round(floor_cpu / drain_cpu, 3),
                "load_average": round(os.getloadavg()[0], 2),
                "pull_rows_per_s": round(pull),
                "select_rows_per_s": round(select_rate),
                "pull_ratio": round(pull_ratio, 3),
                "pull_post_ack_rows_per_s": round(statistics.median(p[0] for p in posts)),
                "pull_post_ack_ratio": round(post_ratio, 3),
                "pull_cpu_ratio": round(pull_cpu_ratio, 3),
                "pull_gateway_cpu_us_per_row": round(statistics.median(p[1] for p in pulls) * 1e6, 3),
                "pull_consumer_cpu_us_per_row": round(statistics.median(p[2] for p in pulls) * 1e6, 3),
                "pull_rounds_rows_per_s": [round(p[0]) for p in pulls],
                "pull_pages_read_ahead": ahead,
                "pull_events_rows_per_s": events["rows_per_s"],
                "pull_events_ratio": events["ratio"],
                "pull_events_row_read_ratio": events["row_read_ratio"],
                "pull_events_mixed_vs_row_read": events["mixed_vs_row_read"],
                "pull_events": events,
                "select_rounds_rows_per_s": [round(q[0]) for q in selects],
                "latency_ms": round(latency * 1000),
                "latency_drain_rows_per_s": {str(k): round(rate) for k, rate in over_latency.items()},
                "latency_ratio": {str(k): round(rate / floor_rate, 3) for k, rate in over_latency.items()},
                "latency_default_rows_per_s": round(default_rate),
                "latency_default_ratio": round(default_rate / floor_rate, 3),
                "latency_default_batch_items": default_items,
            }
        )
    )


if __name__ == "__main__":
    main()
