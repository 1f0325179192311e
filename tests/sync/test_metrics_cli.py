"""`/metrics` (Prometheus text from the runtime's counters, checked by promtool) and `edge sync
status`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from edge.api.tokens import create_token
from edge.model import Event, Quality, Reading
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.tools import require_tool
from tests.support.waiting import until
from tests.sync.helpers import free_port, wait_for


def sink(url: str) -> dict[str, object]:
    return {"id": "central", "type": "http", "url": url, "batch": {"max_items": 100, "max_age": "50ms"}}


# A meter whose 20 counters are sampled together once a second: 20 readings per second, in bursts.
METER_POINTS = 20
METER = {
    "id": "meter",
    "driver": "sim",
    "points": [{"name": f"c{i}", "signal": "counter", "interval": "1s"} for i in range(METER_POINTS)],
}


async def scrape(port: int, token: str) -> str:
    """The /metrics text, read with a read-scope API token."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 200 and r.content_type == "text/plain", await r.text()
        return await r.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


async def test_metrics_expose_runtime_counters(tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    rx = receiver()
    dead = f"http://127.0.0.1:{free_port()}/ingest"
    doc = {
        "upstream": [
            sink(rx.url),
            {**sink(dead), "id": "offline", "retry": {"initial": "10ms", "max": "50ms"}},
        ]
    }
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest([Reading(time.time(), "dev.p", float(i)) for i in range(40)])
        committed = await rt.journal.flush()
        await wait_for(lambda: rt.components["sync"].sinks["central"].cursor >= committed, 10, "delivery")
        await wait_for(lambda: rt.components["sync"].sinks["offline"].retries >= 2, 10, "retries")
        token = create_token(rt.state, "prom", ["read"])
        text = await scrape(rt.web_port, token)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{rt.web_port}/metrics") as r:
            assert r.status == 401
    got = samples(text)
    assert got[("edge_readings_received_total", ())] == 40
    assert got[("edge_journal_committed_seq", ())] >= committed
    assert got[("edge_sink_sent_rows_total", (("sink", "central"),))] >= 40
    assert got[("edge_sink_backlog_rows", (("sink", "offline"),))] >= committed - 1
    assert got[("edge_sink_retries_total", (("sink", "offline"),))] >= 2
    assert ("edge_ingest_rate", ()) in got
    assert 0 <= got[("edge_sink_in_flight", (("sink", "offline"),))] <= 1  # max_in_flight 1


async def test_every_drop_is_in_the_metrics(tmp_path: Path) -> None:
    """What the hub, the buffer and the drivers drop reaches /metrics as edge_dropped_total by
    where and why: a driver that emits faster than the hub takes its batches, a hub subscriber
    that fails on a batch."""
    doc = {"devices": [{"id": "m", "driver": "sim", "points": [{"name": "p", "interval": "1h"}]}]}
    async with running_site(tmp_path, doc) as rt:
        await until(lambda: rt.slots["m"].driver is not None, what="the driver")
        driver = rt.slots["m"].driver
        t = time.time()
        for i in range(1500):  # in one turn of the loop: past the driver's queue
            driver.emit([Reading(t + i * 0.001, "m.p", float(i))])

        def fails(records: object) -> None:
            raise RuntimeError("a subscriber that cannot take this batch")

        rt.hub.subscribe(fails)
        rt.hub.ingest([Reading(t + 5, "m.p", -1.0)])
        dropped = next(d["dropped"] for d in rt.devices_status() if d["id"] == "m")
        assert dropped > 0 and rt.hub.subscriber_errors > 0
        got = samples(await scrape(rt.web_port, create_token(rt.state, "prom", ["read"])))
    assert got[("edge_dropped_total", (("reason", "dropped"), ("where", "driver:m")))] == dropped
    assert got[("edge_dropped_total", (("reason", "subscriber_error"), ("where", "hub")))] >= 1
    assert ("edge_dropped_total", (("reason", "dropped_oldest"), ("where", "buffer"))) in got


async def test_what_a_sinks_format_leaves_out_or_moves_is_in_the_metrics(tmp_path: Path) -> None:
    """An InfluxDB sink cannot carry a failed read (no value) and writes an event that shares its
    series and time with another one unit later: both are counted in its status and reach
    /metrics (edge_sink_left_out_total by reason, edge_sink_events_shifted_total), and so does
    what the sink's include lists leave out. Counted as the batch is encoded: the receiver need
    not answer."""
    doc = {
        "upstream": [
            {
                "id": "tsdb",
                "type": "influxdb",
                "url": f"http://127.0.0.1:{free_port()}",
                "database": "community",
                "include": {"event_kinds": ["door"]},
                "batch": {"max_items": 50, "max_age": "50ms"},
                "retry": {"initial": "50ms", "max": "500ms"},
            }
        ]
    }
    async with running_site(tmp_path, doc) as rt:
        t = time.time()
        rt.hub.ingest(
            [
                Reading(t, "dev.kw", None, Quality.BAD),
                Event("door", "dev", "info", {"n": 1}, t),
                Event("door", "dev", "info", {"n": 2}, t),
                Event("bin_full", "dev", "info", {}, t),
            ]
        )
        tsdb = rt.components["sync"].sinks["tsdb"]
        await until(
            lambda: tsdb.status()["unrepresentable"] >= 1 and tsdb.status()["events_shifted"] >= 1,
            what="the batch encoded",
        )
        got = samples(await scrape(rt.web_port, create_token(rt.state, "prom", ["read"])))
        status = tsdb.status()
    assert (
        got[("edge_sink_left_out_total", (("reason", "unrepresentable"), ("sink", "tsdb")))]
        == (status["unrepresentable"])
    )
    assert got[("edge_sink_events_shifted_total", (("sink", "tsdb"),))] == status["events_shifted"]
    assert got[("edge_sink_withheld_filter_total", (("sink", "tsdb"),))] == status["withheld_filter"] >= 1


async def test_a_scrape_does_not_change_what_the_next_scraper_reads(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": [METER]}) as rt:
        # the journal measures its rate once it has commits a second apart; over the first two
        # of the meter's once-a-second bursts that reads up to 40 rows in 1.3 s: wait for four
        await until(lambda: rt.journal.rates()[0], timeout=20, what="two commits a second apart")
        await until(lambda: rt.hub.received >= 4 * METER_POINTS, timeout=20, what="four bursts")
        token = create_token(rt.state, "prom", ["read"])
        first, second = samples(await scrape(rt.web_port, token)), samples(await scrape(rt.web_port, token))
    for got in (first, second):
        # 20 readings a second, plus the device's online event; generous for a loaded machine
        assert 0.5 * METER_POINTS <= got[("edge_ingest_rate", ())] <= 1.5 * METER_POINTS, got
    # what only ever grows is a counter, for rate(); the engine's levels stay gauges
    assert ("edge_rules_count_total", (("counter", "firings"),)) in second
    assert ("edge_rules_status", (("field", "firings"),)) not in second
    assert ("edge_rules_status", (("field", "rules"),)) in second
    assert ("edge_rules_status", (("field", "window_backfill_truncated"),)) in second  # docs/rules.md


async def test_promtool_accepts_the_live_metrics(tmp_path: Path, receiver, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    promtool = require_tool("promtool", "Debian package prometheus")
    rx = receiver()
    monkeypatch.setenv("CITY_TOKEN", "city-0123456789")
    doc = {
        "devices": [METER],
        "upstream": [sink(rx.url)],
        "consumers": [{"id": "city", "token_env": "CITY_TOKEN"}],
    }
    async with running_site(tmp_path, doc) as rt:
        await until(lambda: rt.hub.received >= METER_POINTS, timeout=20, what="a first poll of the meter")
        text = await scrape(rt.web_port, create_token(rt.state, "prom", ["read"]))
    for family in ("edge_readings_received", "edge_sink_sent_rows", "edge_consumer_backlog_rows"):
        assert family in text
    check = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    # promtool prints one line per problem (a counter without _total, a missing HELP, a bad unit)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
        check.stdout + check.stderr
    )


async def test_sync_status_cli(tmp_path: Path, receiver, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rx = receiver()
    monkeypatch.setenv("CITY_TOKEN", "city-0123456789")
    doc = {"upstream": [sink(rx.url)], "consumers": [{"id": "city", "token_env": "CITY_TOKEN"}]}
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest([Reading(time.time(), "dev.p", float(i)) for i in range(10)])
        committed = await rt.journal.flush()
        await wait_for(lambda: rt.components["sync"].sinks["central"].cursor >= committed, 10, "delivery")
    path = site_file(tmp_path, doc)
    status = ["sync", "status", "-c", str(path)]
    out = await asyncio.to_thread(
        edge_cli, *status, "--json", env={"CITY_TOKEN": "x", "PATH": "/usr/bin:/bin"}
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    central = data["sinks"][0]
    assert central["id"] == "central" and central["cursor"] >= committed and central["last_success"]
    assert (
        data["consumers"][0]["id"] == "city" and data["consumers"][0]["backlog_rows"] == data["committed_seq"]
    )
    text = await asyncio.to_thread(edge_cli, *status)
    assert text.returncode == 0 and "sink central (http)" in text.stdout and "consumer city" in text.stdout
    missing = await asyncio.to_thread(edge_cli, "sync", "status", "-c", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "nope.yaml" in missing.stderr


async def test_metrics_show_retention_and_clock_trust(tmp_path: Path) -> None:
    """What retention per class and the clock guard do is visible to Prometheus: the expired
    counters, the pause, and whether the clock is trusted (an unsynchronised kernel clock on a
    site that does not trust one: 0; a site that trusts it: 1)."""
    async with running_site(tmp_path, {"clock": {"trust_unsynced": False}}) as rt:
        token = create_token(rt.state, "prom", ["read"])
        untrusted = samples(await scrape(rt.web_port, token))
        trusted_now = rt.clock_trust.trusted
    assert untrusted[("edge_retention_expired_total", ())] == 0
    assert untrusted[("edge_snapshots_expired_total", ())] == 0
    assert untrusted[("edge_retention_paused", ())] == 0
    assert untrusted[("edge_clock_trusted", ())] == (1 if trusted_now else 0)
    (tmp_path / "b").mkdir()
    async with running_site(tmp_path / "b", {"clock": {"trust_unsynced": True}}) as rt:
        token = create_token(rt.state, "prom", ["read"])
        assert samples(await scrape(rt.web_port, token))[("edge_clock_trusted", ())] == 1


def test_buffer_stats_show_retention_counters_and_a_pause() -> None:
    from edge.commands import format_health

    text = format_health(
        {"rows": 1, "retention_expired": 12, "snapshots_expired": 3, "retention_paused": "clock jumped"}
    )
    assert "retention expired 12" in text and "snapshots expired 3" in text
    assert "WARNING         retention paused: clock jumped" in text
