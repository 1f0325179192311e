"""The mqtt sink against a real mosquitto: delivery once each in order at QoS 1 (MQTT 5 and 3.1.1),
the PUBACK-gated cursor, broker restarts mid-stream, the retained birth message and the clean
goodbye, the per-point format, a record over the message cap dead-lettered, the persisted status."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.model import Event, Reading, Severity
from tests.mqtt.broker import Subscriber, all_arrived, mqtt_sink, sink_of
from tests.support.cli import edge_cli
from tests.support.site import running_site
from tests.support.waiting import until

TOPIC = "edge/test-site/records"


def moved_past(sink: Any, seq: int) -> Callable[[], bool]:
    return lambda: bool(sink.cursor > seq)


def readings(n: int, start: int = 0) -> list[Reading]:
    t = time.time()
    return [Reading(t + (start + i) * 1e-3, "dev.p", float(start + i)) for i in range(n)]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_records_arrive_once_each_in_order(tmp_path: Path, broker, protocol: str) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    async with Subscriber(b.port) as sub:
        async with running_site(
            tmp_path, {"upstream": [mqtt_sink(b.port, protocol=protocol)]}, web=False
        ) as rt:
            for k in range(5):
                rt.hub.ingest(readings(100, k * 100))
            committed = await rt.journal.flush()
            s = sink_of(rt)
            await until(lambda: s.cursor >= committed, 20, what="the cursor to pass every record")
            await until(all_arrived(sub, TOPIC, committed), 10, what="every record at the subscriber")
            assert sub.seqs(TOPIC) == list(range(1, committed + 1))
            st = s.status()
            assert st["connected"] is True and st["last_puback"] is not None and st["type"] == "mqtt"
            assert sub.on("edge/test-site/status")[-1] == b"online"
        # a clean stop publishes `offline` itself (retained)
        await until(lambda: sub.on("edge/test-site/status")[-1:] == [b"offline"], 10, what="offline on stop")


async def test_cursor_moves_only_past_acknowledged_records(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    async with running_site(tmp_path, {"upstream": [mqtt_sink(b.port)]}, web=False) as rt:
        s = sink_of(rt)
        rt.hub.ingest(readings(10))
        acked = await rt.journal.flush()
        await until(lambda: s.cursor >= acked, 20, what="the first records acknowledged")
        # the broker holds the connection but answers nothing: no PUBACK can arrive
        b.freeze()
        rt.hub.ingest(readings(40, 10))
        committed = await rt.journal.flush()
        await until(lambda: s.status()["in_flight"] >= 1, 10, what="a batch published to the frozen broker")
        b.kill()
        await until(lambda: s.failures >= 1, 20, what="the lost connection to fail the batch")
        assert s.cursor == acked and s.durable_cursor == acked
        assert "not all acknowledged" in s.last_error or "cannot connect" in s.last_error
        b.start()  # same port
        async with Subscriber(b.port) as sub:
            await until(lambda: s.cursor >= committed, 30, what="the batch published again and acknowledged")
            await until(
                lambda: set(range(acked + 1, committed + 1)) <= set(sub.seqs(TOPIC)),
                10,
                what="the unacknowledged records at the subscriber",
            )
        assert s.status()["connects"] >= 2


async def test_broker_restarts_mid_stream_lose_nothing(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    restarts = 2
    # The subscriber's own session repeats what the broker had sent it unacknowledged when it went
    # down (QoS 1 at the subscriber's end): with Receive Maximum 1 that is at most one message a
    # restart, so the duplicates this test can see are one batch from the gateway and one message
    # from the broker per restart.
    connect = Properties(PacketTypes.CONNECT)
    connect.ReceiveMaximum = 1
    connect.SessionExpiryInterval = 600
    async with Subscriber(b.port, protocol=aiomqtt.ProtocolVersion.V5, properties=connect) as sub:
        async with running_site(tmp_path, {"upstream": [mqtt_sink(b.port)]}, web=False) as rt:
            s = sink_of(rt)
            committed = at_restart = 0
            for k in range(30):
                rt.hub.ingest(readings(20, k * 20))
                committed = await rt.journal.flush()
                if k in (10, 20):
                    # mid-stream: whatever is in flight now may be published twice
                    await until(
                        moved_past(s, at_restart), 20, what="records acknowledged since the last restart"
                    )
                    at_restart = s.cursor
                    b.restart()
            await until(lambda: s.cursor >= committed, 60, what="the cursor to pass every record")
            await until(all_arrived(sub, TOPIC, committed), 30, what="every record at the subscriber")
        seqs = sub.seqs(TOPIC)
        counts = sub.counts(TOPIC)
        assert set(counts) == set(range(1, committed + 1))
        # duplicates only from what was in flight at a restart: at most one batch (50 records)
        # published again by the gateway and one message redelivered by the broker per restart
        duplicated = [q for q, n in counts.items() if n > 1]
        assert len(duplicated) <= restarts * (50 + 50), duplicated
        # in order: each record first arrives after every record before it
        first_seen = list(dict.fromkeys(seqs))
        out_of_order = [(a, b) for a, b in itertools.pairwise(first_seen) if b < a]
        assert not out_of_order, (out_of_order, seqs)


async def test_the_persisted_status_holds_the_link_state(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    """`edge sync status` reads the snapshot from the state database: it carries the link's state."""
    b = broker()

    def saved(state: Any) -> dict[str, Any]:
        with state.lock:
            row = state.conn.execute("SELECT status FROM sync_status WHERE sink='central'").fetchone()
        return orjson.loads(row[0]) if row else {}

    async with running_site(tmp_path, {"upstream": [mqtt_sink(b.port)]}, web=False) as rt:
        rt.hub.ingest(readings(10))
        committed = await rt.journal.flush()
        s = sink_of(rt)
        await until(lambda: s.cursor >= committed, 20, what="the records acknowledged")
        await until(lambda: saved(rt.state).get("last_puback") is not None, 10, what="the snapshot written")
        snap = saved(rt.state)
        assert snap["connected"] is True and snap["session_present"] is False
        shown = await asyncio.to_thread(edge_cli, "sync", "status", "-c", str(tmp_path / "site.yaml"))
        as_json = await asyncio.to_thread(
            edge_cli, "sync", "status", "--json", "-c", str(tmp_path / "site.yaml")
        )
    assert shown.returncode == 0, shown.stderr
    assert "connected yes, session present no, last puback " in shown.stdout, shown.stdout
    row = orjson.loads(as_json.stdout)["sinks"][0]
    assert row["connected"] is True and row["last_puback"] is not None


async def test_point_format_and_a_record_over_the_cap(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    doc = {"upstream": [mqtt_sink(b.port, format="point", max_message_bytes="1KiB")]}
    async with Subscriber(b.port) as sub:
        async with running_site(tmp_path, doc, web=False) as rt:
            t = time.time()
            rt.hub.ingest([Reading(t, "dev.temp", 21.5), Reading(t, "dev.on", True)])
            rt.hub.publish_event(Event("note", "dev", Severity.INFO, {"text": "x" * 2000}, t))
            rt.hub.publish_event(Event("alert", "dev", Severity.WARNING, {"text": "small"}, t))
            committed = await rt.journal.flush()
            s = sink_of(rt)
            await until(lambda: s.cursor >= committed, 20, what="the stream past the big record")
            await until(lambda: sub.on("edge/test-site/events/alert"), 10, what="the event after it")
            assert s.status()["dead_letters"] == 1 and "max_message_bytes" in s.last_error
            temp = orjson.loads(sub.on("edge/test-site/dev/temp")[0])
            assert temp["value"] == 21.5 and temp["quality"] == "good" and temp["ts"] == t
            assert set(temp) == {"seq", "ts", "value", "quality"}  # the topic names the point
            assert orjson.loads(sub.on("edge/test-site/dev/on")[0])["value"] is True
            assert orjson.loads(sub.on("edge/test-site/events/alert")[0])["payload"] == {"text": "small"}
            assert not sub.on("edge/test-site/events/note")
