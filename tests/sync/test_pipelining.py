"""`max_in_flight`: several batches of a sink in flight at once against a real receiver on
127.0.0.1 that holds each request a while and counts how many it serves at the same time. The
cursor moves only over delivered batches, failures back off together, poison is still isolated,
and the default still sends one batch at a time in order (also across kill -9)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from edge.model import Reading
from tests.support.site import running_site
from tests.support.waiting import until
from tests.sync.helpers import free_port
from tests.sync.test_chaos import HANG, KILLS, kill_then_drain, site_doc
from tests.sync.test_http_sink import sink as http_sink


@dataclass
class Request:
    first: int
    last: int
    key: str
    status: int
    seqs: list[int]


@dataclass
class SlowReceiver:
    """Answers every batch after `delay` seconds; `active`/`peak`: requests being served at once.
    Batches whose first seq is in `down_for` get 503 at once while `down` is set (with
    `Retry-After` if given); batches holding a `poison` point get 400."""

    delay: float = 0.0
    active: int = 0
    peak: int = 0
    requests: list[Request] = field(default_factory=list)
    down: bool = False
    down_for: set[int] | None = None  # None: every batch while down
    retry_after: str | None = None
    poison: set[str] = field(default_factory=set)
    hold_until: int = 0  # hold the 503s until this many requests have arrived
    received: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def reset(self) -> None:
        self.requests.clear()
        self.received = self.peak = 0
        self.arrived.clear()

    def accepted(self) -> list[Request]:
        return [r for r in self.requests if r.status == 204]

    def seqs(self) -> set[int]:
        return {q for r in self.accepted() for q in r.seqs}

    async def ingest(self, request: web.Request) -> web.Response:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            wire = await request.read()
            gzipped = request.headers.get("Content-Encoding") == "gzip"
            doc = orjson.loads(zlib.decompress(wire, 47) if gzipped else wire)
            first, last = doc["first_seq"], doc["last_seq"]
            seqs = sorted([r["seq"] for r in doc["readings"]] + [e["seq"] for e in doc["events"]])
            self.received += 1
            if self.received >= self.hold_until:
                self.arrived.set()
            status, headers = 204, {}
            if self.down and (self.down_for is None or first in self.down_for):
                await self.arrived.wait()
                status = 503
                if self.retry_after:
                    headers["Retry-After"] = self.retry_after
            else:
                await asyncio.sleep(self.delay)  # the link's round trip
                if any(r["point"] in self.poison for r in doc["readings"]):
                    status = 400
            self.requests.append(Request(first, last, request.headers["Idempotency-Key"], status, seqs))
            return web.Response(status=status, headers=headers, text="" if status == 204 else "no")
        finally:
            self.active -= 1


@contextlib.asynccontextmanager
async def slow_receiver(delay: float = 0.0) -> AsyncIterator[SlowReceiver]:
    rx = SlowReceiver(delay)
    app = web.Application()
    app.router.add_post("/ingest", rx.ingest)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rx.url = f"http://127.0.0.1:{port}/ingest"
    try:
        yield rx
    finally:
        await runner.cleanup()


def sink(url: str, in_flight: int | None, **extra: object) -> dict[str, object]:
    """test_http_sink's sink entry, with `max_in_flight` when given (None: the default)."""
    return http_sink(url, **({"max_in_flight": in_flight} if in_flight is not None else {}), **extra)


async def settled(rt: Any, rx: SlowReceiver) -> int:
    """Wait until the sink delivered the start-up records, forget them at the receiver, and
    return the cursor: the next batches are then aligned at cursor + 1, + 51, + 101, ..."""
    s = rt.components["sync"].sinks["central"]
    await until(
        lambda: s.cursor >= rt.journal.committed_seq > 0 and s.status()["in_flight"] == 0,
        10,
        what="the start-up records to be delivered",
    )
    rx.reset()
    return int(s.cursor)


async def backlog(rt: Any, n: int, poison_at: int | None = None) -> int:
    """Journal `n` readings (one of them on the poison point) and return the committed seq."""
    t = time.time()
    batch = [Reading(t + i * 1e-3, "dev.p", float(i)) for i in range(n)]
    if poison_at is not None:
        batch[poison_at] = Reading(t + poison_at * 1e-3, "dev.poison", -1.0)
    rt.hub.ingest(batch)
    return int(await rt.journal.flush())


async def test_batches_go_concurrently_and_the_cursor_reaches_the_end(tmp_path: Path) -> None:
    async with slow_receiver(delay=0.2) as rx, running_site(tmp_path, {"upstream": [sink(rx.url, 4)]}) as rt:
        s = rt.components["sync"].sinks["central"]
        b = await settled(rt, rx)
        committed = await backlog(rt, 600)
        await until(lambda: rx.active >= 2, 10, what="two requests at the receiver at once")
        assert s.status()["in_flight"] >= 2 and s.status()["max_in_flight"] == 4
        await until(lambda: s.cursor >= committed, 20, what="the cursor to reach the last seq")
        assert 1 < rx.peak <= 4
        assert rx.seqs() == set(range(b + 1, committed + 1))
        assert s.cursor == committed and s.failures == 0
        await until(lambda: s.status()["in_flight"] == 0, 5, what="the window to empty")
        await until(lambda: rt.journal.get_cursor("central") == committed, 5, what="the durable cursor")


async def test_cursor_waits_for_a_failing_first_batch_then_jumps(tmp_path: Path) -> None:
    async with slow_receiver(delay=0.05) as rx, running_site(tmp_path, {"upstream": [sink(rx.url, 4)]}) as rt:
        s = rt.components["sync"].sinks["central"]
        b = await settled(rt, rx)
        # the first batch fails (once the other three are sent too) until the test says so
        rx.down, rx.down_for, rx.hold_until = True, {b + 1}, 4
        committed = await backlog(rt, 200)
        await until(
            lambda: (
                {b + 51, b + 101, b + 151} <= {r.first for r in rx.accepted()}
                and sum(r.status == 503 for r in rx.requests) >= 3
                and s.failures >= 3
            ),
            20,
            what="batches 2-4 delivered while batch 1 keeps failing",
        )
        # not past the failed batch, in memory or on disk, though everything after it is delivered
        assert s.cursor == b and rt.journal.get_cursor("central") == b
        # the failed batch in flight; and, when the gateway journaled a record since (the sink's
        # own failure event, say), the batch of it may be too
        status, later = s.status(), rt.journal.committed_seq
        assert status["in_flight"] == 1 or (later > committed and status["in_flight"] == 2), status
        assert status["backlog_rows"] == later - b
        assert s.failures == s.retries >= 3
        rx.down = False
        await until(lambda: s.cursor == committed, 10, what="the cursor to jump over the whole window")
        assert rx.accepted()[-1].first == b + 1  # the last batch delivered was the one that failed
        assert rx.seqs() == set(range(b + 1, committed + 1))
        await until(lambda: rt.journal.get_cursor("central") == committed, 5, what="the durable cursor")


async def test_retry_after_holds_though_batches_sent_before_the_failure_succeed(tmp_path: Path) -> None:
    cfg = sink("", 4, retry={"initial": "50ms", "max": "5s"})
    async with (
        slow_receiver(delay=0.2) as rx,
        running_site(tmp_path, {"upstream": [{**cfg, "url": rx.url}]}) as rt,
    ):
        s = rt.components["sync"].sinks["central"]
        b = await settled(rt, rx)
        rx.down, rx.down_for, rx.hold_until, rx.retry_after = True, {b + 1}, 4, "1"
        committed = await backlog(rt, 200)
        await until(lambda: len(rx.accepted()) == 3, 10, what="batches 2-4 to succeed after batch 1 failed")
        # their successes do not end the sink's own wait: the receiver asked for a second
        assert s.failures == 1 and (s.status()["retry_in_s"] or 0) > 0.3
        rx.down = False
        await until(lambda: s.cursor >= committed, 10, what="batch 1 after the Retry-After")
        assert s.failures == s.retries == 1


async def test_an_outage_is_probed_by_one_batch_not_a_storm(tmp_path: Path) -> None:
    async with slow_receiver(delay=0.05) as rx, running_site(tmp_path, {"upstream": [sink(rx.url, 4)]}) as rt:
        s = rt.components["sync"].sinks["central"]
        b = await settled(rt, rx)
        rx.down, rx.hold_until = True, 4  # every batch fails, once all four are in flight
        committed = await backlog(rt, 400)
        await until(lambda: sum(r.status == 503 for r in rx.requests) >= 10, 20, what="ten failures")
        first_wave, retries = rx.requests[:4], rx.requests[4:]
        assert sorted(r.first for r in first_wave) == [b + 1, b + 51, b + 101, b + 151]
        # after the shared backoff only the lowest batch is retried, alone, while the link is down
        assert {r.first for r in retries} == {b + 1}
        peak_in_outage = rx.peak
        rx.down = False
        await until(lambda: s.cursor >= committed, 20, what="delivery once the receiver is back")
        assert peak_in_outage == 4 and set(range(b + 1, committed + 1)) <= rx.seqs()
        mine = {r.key for r in rx.accepted() if r.last <= committed}
        assert len(mine) == 8
        assert s.failures == s.retries == sum(r.status == 503 for r in rx.requests)


async def test_poison_in_the_second_concurrent_batch_is_dead_lettered_alone(tmp_path: Path) -> None:
    async with slow_receiver(delay=0.1) as rx, running_site(tmp_path, {"upstream": [sink(rx.url, 4)]}) as rt:
        s = rt.components["sync"].sinks["central"]
        b = await settled(rt, rx)
        rx.poison = {"dev.poison"}
        committed = await backlog(rt, 200, poison_at=77)  # in the second batch, b+51..b+100
        poison = b + 78
        await until(
            lambda: s.cursor >= committed and s.dead_letters == 1, 20, what="the stream to pass the poison"
        )
        assert rx.peak > 1
        assert {q for q in rx.seqs() if q <= committed} == set(range(b + 1, committed + 1)) - {poison}
        with rt.state.lock:
            letters = rt.state.conn.execute(
                "SELECT seq FROM sync_dead_letters WHERE sink='central'"
            ).fetchall()
        assert [row[0] for row in letters] == [poison]
        assert s.status()["dead_letters"] == 1 and s.failures >= 1 and s.retries == 0


async def test_bandwidth_cap_holds_over_all_batches_in_flight(tmp_path: Path) -> None:
    rate = 4096
    cfg = sink("", 4, max_bytes_per_s="4KiB", gzip_level=0, batch={"max_items": 20, "max_age": "10ms"})
    async with (
        slow_receiver(delay=0.05) as rx,
        running_site(tmp_path, {"upstream": [{**cfg, "url": rx.url}]}) as rt,
    ):
        s = rt.components["sync"].sinks["central"]
        await settled(rt, rx)
        bytes_before, batches_before = s.sent_bytes, s.sent_batches
        start = time.monotonic()
        committed = await backlog(rt, 80)
        await until(lambda: s.cursor >= committed, 30, what="delivery under the cap")
        elapsed = time.monotonic() - start
        sent, batches = s.sent_bytes - bytes_before, s.sent_batches - batches_before
        # the first batch goes at once, each next one when the bytes before it are paid for
        assert batches >= 4 and s.throttled_s > 0
        assert elapsed >= 0.95 * (sent - sent / batches) / rate, (elapsed, sent, batches)


async def test_default_sends_one_batch_at_a_time_in_order(tmp_path: Path) -> None:
    async with (
        slow_receiver(delay=0.05) as rx,
        running_site(tmp_path, {"upstream": [sink(rx.url, None)]}) as rt,
    ):
        s = rt.components["sync"].sinks["central"]
        b = await settled(rt, rx)
        committed = await backlog(rt, 300)
        await until(lambda: s.cursor >= committed, 20, what="delivery")
        assert rx.peak == 1
        firsts = [r.first for r in rx.requests]
        assert firsts == [b + 1, b + 51, b + 101, b + 151, b + 201, b + 251]
        assert s.status()["max_in_flight"] == 1


async def test_nothing_is_lost_across_kill9_with_four_in_flight(tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    """test_chaos's scenario with max_in_flight 4: out of order, replays bounded by the window."""
    in_flight = 4
    rx = receiver("--fail", "0.35", "--hang", HANG, "--seed", "11", "--cycle")
    web_port = free_port()
    sites = {}
    for name, with_sim in (("busy", True), ("drain", False)):
        doc = site_doc(tmp_path, rx.url, web_port, with_sim)
        doc["upstream"][0]["max_in_flight"] = in_flight
        sites[name] = tmp_path / f"{name}.yaml"
        sites[name].write_text(yaml.safe_dump(doc))

    status, log = await kill_then_drain(tmp_path, rx, sites["busy"], sites["drain"], web_port)
    assert status["max_in_flight"] == in_flight
    cursor = status["cursor"]

    accepted = [e for e in log if e["outcome"].endswith("ok")]
    received: set[int] = set()
    own: dict[str, set[int]] = {}  # seqs each instance delivered
    keys: dict[str, set[str]] = {}
    duplicates = 0
    for e in accepted:
        seqs = set(e["seqs"])
        assert e["seqs"] == list(range(e["first"], e["last"] + 1)), "a batch must be a contiguous seq range"
        mine, my_keys = own.setdefault(e["instance"], set()), keys.setdefault(e["instance"], set())
        if mine & seqs:
            # inside one instance a seq comes again only as a retry of the same batch (a
            # response lost to the client's timeout); a new instance may replay what a killed
            # one had in flight or not yet made durable
            assert e["key"] in my_keys, f"duplicate inside one instance at seq {e['first']}"
        duplicates += bool(received & seqs)
        mine |= seqs
        my_keys.add(e["key"])
        received |= seqs
    assert received == set(range(1, cursor + 1))
    assert len(keys) == KILLS + 1
    assert duplicates <= len(accepted) // 2  # replays are the exception, not the rule
    mine_log = [e for e in log if e["instance"] == status["instance"]]
    by_key = {e["key"]: e for e in mine_log if e["outcome"].endswith("ok")}
    assert status["sent_batches"] == len(by_key)
    assert status["sent_rows"] == sum(len(e["seqs"]) for e in by_key.values())
    assert status["failures"] + status["sent_batches"] == len(mine_log)
    assert status["failures"] == status["retries"]
    assert status["dead_letters"] == 0
