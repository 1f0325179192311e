"""What the broker or the records refuse, against a real mosquitto and a running gateway: a publish
the broker's ACL refuses (MQTT 5 PUBACK reason 135) fails the batch, is retried with backoff and
said in the status, and nothing is lost once the ACL allows it; a record whose topic cannot be built
(a + or # in its event kind) is dead-lettered and the stream goes on."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from edge.model import Event, Reading, Severity
from tests.mqtt.broker import Subscriber, all_arrived, mqtt_sink, password_file, sink_of
from tests.mqtt.test_mqtt_sink import TOPIC, readings
from tests.support.site import running_site
from tests.support.waiting import until


async def test_a_publish_the_acl_refuses_is_retried_not_counted_delivered(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    pwfile = password_file(tmp_path / "passwd", {"gw": "gw-pass", "reader": "r3ad"})
    acl = tmp_path / "acl"
    # the gateway may publish its status but not its records (a wrong ACL at the site)
    acl.write_text("user gw\ntopic write edge/test-site/status\nuser reader\ntopic read #\n")
    b = broker(f"allow_anonymous false\npassword_file {pwfile}\nacl_file {acl}\n")
    (tmp_path / "gwpass").write_text("gw-pass\n")
    doc = {"upstream": [mqtt_sink(b.port, username="gw", password_file=str(tmp_path / "gwpass"))]}
    async with Subscriber(b.port, username="reader", password="r3ad") as sub:
        async with running_site(tmp_path, doc, web=False) as rt:
            s = sink_of(rt)
            rt.hub.ingest(readings(30))
            committed = await rt.journal.flush()
            await until(lambda: s.failures >= 3, 20, what="the refused batch to fail (and be retried)")
            st = s.status()
            assert s.cursor == 0 and s.durable_cursor == 0, "a refused batch is not delivered"
            assert st["dead_letters"] == 0, "an ACL refusal is a configuration problem, not bad records"
            assert "not authorized" in s.last_error.lower() and TOPIC in s.last_error, s.last_error
            assert st["messages_refused"] >= 1
            # the broker answered: a refusal is retried with backoff, never at once (mosquitto 2.0
            # closes the connection after refusing one: a reconnect comes only with a retry)
            assert st["connects"] <= st["retries"] + 1, st
            assert st["retries"] <= st["failures"]
            # the operator fixes the ACL: mosquitto reloads it on SIGHUP, and the records go
            acl.write_text("user gw\ntopic write edge/test-site/#\nuser reader\ntopic read #\n")
            assert b.proc is not None
            os.kill(b.proc.pid, signal.SIGHUP)
            await until(lambda: s.cursor >= committed, 30, what="the records delivered once allowed")
            await until(all_arrived(sub, TOPIC, committed), 10, what="every record at the subscriber")
            assert s.status()["dead_letters"] == 0


async def test_a_record_whose_topic_cannot_be_built_is_dead_lettered(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    doc = {"upstream": [mqtt_sink(b.port, format="point")]}
    async with Subscriber(b.port) as sub:
        async with running_site(tmp_path, doc, web=False) as rt:
            s = sink_of(rt)
            t = time.time()
            rt.hub.ingest([Reading(t, "dev.before", 1.0)])
            rt.hub.publish_event(Event("bad/+", "dev", Severity.INFO, {}, t))
            rt.hub.publish_event(Event("bad#", "dev", Severity.INFO, {}, t))
            rt.hub.ingest([Reading(t, "dev.after", 2.0)])
            rt.hub.publish_event(Event("alert", "dev", Severity.WARNING, {"text": "fine"}, t))
            committed = await rt.journal.flush()
            await until(lambda: s.cursor >= committed, 20, what="the stream past the bad topics")
            await until(lambda: sub.on("edge/test-site/events/alert"), 10, what="the event after them")
            st = s.status()
            assert st["dead_letters"] == 2, st
            assert "topic" in s.last_error, s.last_error
            # each good record once: the ones before the bad one are not sent again and again
            assert len(sub.on("edge/test-site/dev/before")) == 1
            assert len(sub.on("edge/test-site/dev/after")) == 1
            assert len(sub.on("edge/test-site/events/alert")) == 1
