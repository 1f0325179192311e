"""The HTTP push sink against a real receiver process: poison isolation, filters and privacy,
auth (bearer + HMAC), retry classes, the link-return probe and the bandwidth cap."""

from __future__ import annotations

import os
import time
from pathlib import Path

import aiohttp

from edge.api.tokens import create_token
from edge.model import Event, Reading
from tests.support.site import running_site
from tests.sync.helpers import free_port, sink, wait_for


def delivered(rt, sink_id: str = "central") -> bool:  # type: ignore[no-untyped-def]
    return rt.components["sync"].sinks[sink_id].cursor >= rt.journal.committed_seq


async def test_poison_record_is_isolated_dead_lettered_and_reported(tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    rx = receiver("--poison", "dev.poison")
    async with running_site(tmp_path, {"upstream": [sink(rx.url)]}) as rt:
        t = time.time()
        batch = [Reading(t + i * 1e-3, "dev.p", float(i)) for i in range(120)]
        batch[77] = Reading(t + 77e-3, "dev.poison", -1.0)
        rt.hub.ingest(batch)
        committed = await rt.journal.flush()
        s = rt.components["sync"].sinks["central"]
        await wait_for(
            lambda: s.cursor >= committed and s.dead_letters == 1, 20, "the stream to pass the poison"
        )
        poison_seq = committed - 120 + 77 + 1
        got = {q for e in await rx.accepted() for q in e["seqs"]}
        assert poison_seq not in got
        assert set(range(1, committed + 1)) - got == {poison_seq}
        st = s.status()
        assert st["dead_letters"] == 1 and st["failures"] >= 1
        # the dead letter is raised as an event (and that event itself travels upstream)
        await rt.journal.flush()
        events = [r for r in rt.journal.tail(50) if r["type"] == "event" and r["kind"] == "sync_dead_letter"]
        assert events and events[0]["payload"]["seq"] == poison_seq and events[0]["payload"]["status"] == 400

        token = create_token(rt.state, "t", ["read", "write"])
        h = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{rt.web_port}"
        async with aiohttp.ClientSession(headers=h) as http:
            async with http.get(f"{base}/api/v1/sync/dead-letters?sink=central") as r:
                letters = (await r.json())["dead_letters"]
            assert [d["seq"] for d in letters] == [poison_seq]
            assert letters[0]["record"]["point"] == "dev.poison" and "poison" in letters[0]["response"]
            assert letters[0]["privacy"] == "public"  # its class: it is not deleted by age
            async with http.get(f"{base}/api/v1/sync") as r:
                assert (await r.json())["sinks"][0]["dead_letters"] == 1
            # still rejected: 502 and it stays a dead letter
            async with http.post(f"{base}/api/v1/sync/dead-letters/{letters[0]['id']}/retry") as r:
                assert r.status == 502
            await rx.control(poison=[])
            async with http.post(f"{base}/api/v1/sync/dead-letters/{letters[0]['id']}/retry") as r:
                assert r.status == 200, await r.text()
            async with http.get(f"{base}/api/v1/sync") as r:
                assert (await r.json())["sinks"][0]["dead_letters"] == 0
            async with http.post(f"{base}/api/v1/sync/dead-letters/999/retry") as r:
                assert r.status == 404
        got = {q for e in await rx.accepted() for q in e["seqs"]}
        assert poison_seq in got


async def test_filters_and_privacy_withhold_but_cursor_passes(tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    rx_all = receiver()
    rx_alerts = receiver()
    doc = {
        "devices": [],
        "upstream": [
            sink(rx_all.url, id="all"),
            sink(rx_alerts.url, id="alerts", include={"readings": False, "event_kinds": ["alert"]}),
        ],
    }
    async with running_site(tmp_path, doc) as rt:
        from edge.model import PointInfo, Privacy

        rt.hub.register_points(
            [
                PointInfo("kiosk.systolic", "kiosk", "systolic", privacy=Privacy.SENSITIVE),
                PointInfo("gate.plate", "gate", "plate", privacy=Privacy.PERSONAL),
            ]
        )
        t = time.time()
        rt.hub.ingest(
            [
                Reading(t, "kiosk.systolic", 128.0),
                Reading(t, "gate.plate", "粤B12345"),
                Reading(t, "meter.kw", 3.5),
                Event("alert", "rule-1", "warning", {"state": "fired"}, t),
                Event("blood_pressure", "kiosk", "info", {"systolic": 128}, t),
                Event("vehicle", "gate", "info", {"point": "kiosk.systolic"}, t),
            ]
        )
        committed = await rt.journal.flush()
        await wait_for(
            lambda: delivered(rt, "all") and delivered(rt, "alerts"), 10, "both sinks to pass everything"
        )
        all_points = {p for e in await rx_all.accepted() for p in e["points"]}
        all_kinds = {k for e in await rx_all.accepted() for k in e["kinds"]}
        assert all_points == {"gate.plate", "meter.kw"}  # sensitive kept on site by default
        assert "blood_pressure" not in all_kinds and "vehicle" not in all_kinds and "alert" in all_kinds
        alerts = await rx_alerts.accepted()
        assert {k for e in alerts for k in e["kinds"]} == {"alert"}
        assert all(not e["points"] for e in alerts)
        st = rt.components["sync"].sinks["all"].status()
        assert st["withheld_privacy"] == 3 and st["cursor"] == committed


async def test_bearer_and_hmac_signature(tmp_path: Path, receiver, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rx = receiver("--token", "tok-123", "--hmac-secret", "s3cret")
    monkeypatch.setenv("SINK_TOKEN", "tok-123")
    secret_file = tmp_path / "hmac.txt"
    secret_file.write_text("s3cret\n")
    doc = {"upstream": [sink(rx.url, token_env="SINK_TOKEN", hmac_secret_file=str(secret_file))]}
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest([Reading(time.time(), "dev.p", float(i)) for i in range(30)])
        await rt.journal.flush()
        await wait_for(lambda: delivered(rt), 10, "delivery")
        log = await rx.log()
        assert log and all(e["outcome"] == "ok" and e.get("signed") for e in log)
        assert all(e["key"].startswith("test-site:central:") for e in log)


async def test_wrong_token_is_retried_never_dead_lettered(tmp_path: Path, receiver, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rx = receiver("--token", "right")
    monkeypatch.setenv("SINK_TOKEN", "wrong")
    async with running_site(tmp_path, {"upstream": [sink(rx.url, token_env="SINK_TOKEN")]}) as rt:
        rt.hub.ingest([Reading(time.time(), "dev.p", 1.0)])
        await rt.journal.flush()
        s = rt.components["sync"].sinks["central"]
        await wait_for(lambda: s.failures >= 3, 10, "several failed attempts")
        st = s.status()
        assert st["cursor"] == 0 and st["dead_letters"] == 0 and "401" in st["last_error"]


async def test_retry_after_is_honoured(tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    rx = receiver("--fail", "1", "--modes", "429")
    async with running_site(
        tmp_path, {"upstream": [sink(rx.url, retry={"initial": "10ms", "max": "30s"})]}
    ) as rt:

        async def retried() -> bool:
            return len(await rx.log()) >= 2

        await wait_for(retried, 10, "a retry after a 429")
        first, second = (await rx.log())[:2]
        assert first["outcome"] == "429"
        # full jitter from 10ms would retry almost at once; Retry-After: 1 holds the retry back 1 s
        # (the receiver's arrival times: a loaded machine only spaces them further apart)
        assert second["t"] - first["t"] >= 0.9, (first, second)
        await rx.control(fail=0)
        await wait_for(lambda: delivered(rt), 10, "delivery after the 429s stop")


async def test_link_return_ends_backoff_at_once(tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"http://127.0.0.1:{port}/ingest"
    # a first backoff drawn from [0, 60 s] is over 8 s at once 87 % of the time (from [0, 20 s]: 60 %)
    cfg = sink(url, retry={"initial": "60s", "max": "120s", "probe_every": "100ms"})
    async with running_site(tmp_path, {"upstream": [cfg]}) as rt:
        s = rt.components["sync"].sinks["central"]
        await wait_for(
            lambda: (s.status()["retry_in_s"] or 0) > 8, 60, "a long backoff after connect failures"
        )
        receiver(port=port)
        # without the probe the sink would sleep > 8 s more
        await wait_for(lambda: delivered(rt), 5, "delivery as soon as the link is back")
        assert "cannot connect" in s.last_error


async def test_bandwidth_cap_throttles(tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    rx = receiver()
    cfg = sink(rx.url, max_bytes_per_s="2KiB", gzip_level=0, batch={"max_items": 20, "max_age": "10ms"})
    async with running_site(tmp_path, {"upstream": [cfg]}) as rt:
        rt.hub.ingest([Reading(time.time(), "dev.p", float(i)) for i in range(100)])
        await rt.journal.flush()
        s = rt.components["sync"].sinks["central"]
        await wait_for(lambda: delivered(rt), 30, "delivery under the cap")
        assert s.throttled_s > 0 and s.sent_bytes > 2048


def test_config_errors_are_located(tmp_path: Path) -> None:
    import pytest

    from edge.config import ConfigError
    from tests.support.site import load

    doc = {"upstream": [{"id": "c", "type": "http", "url": "ftp://x", "batch": {"max_items": 0}, "bogus": 1}]}
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, doc)
    text = str(exc.value)
    assert "url" in text and "max_items" in text and "bogus" in text
    doc = {"upstream": [{"id": "i", "type": "influxdb", "url": "http://127.0.0.1:8086"}]}
    with pytest.raises(ConfigError, match="database"):
        load(tmp_path, doc)
    assert os.environ.get("EDGE_NEVER_SET") is None


async def test_batch_age_counts_from_the_record_timestamp(tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    """The tail of an old backlog (records journaled while the gateway was down, or before a
    sink was added) goes at once instead of waiting max_age again."""
    from edge.store.journal import Journal

    rx = receiver()
    journal = Journal(str(tmp_path / "edge.db")).open()
    journal.append([Reading(time.time() - 3600, "dev.p", float(i)) for i in range(5)])
    await journal.flush()
    await journal.close()
    cfg = sink(rx.url, batch={"max_items": 1000, "max_age": "60s"})
    async with running_site(tmp_path, {"upstream": [cfg]}) as rt:
        s = rt.components["sync"].sinks["central"]
        await wait_for(lambda: s.cursor >= 5, 20, "the hour-old records (max_age is 60 s)")
