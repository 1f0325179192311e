"""Pseudonyms over MQTT: a plate reaches a real mosquitto as each sink's own pseudonym, in the json
batch format and in the per-point format alike; the plate itself is in no message."""

from __future__ import annotations

from pathlib import Path

import orjson

from edge.privacy.pseudonym import pseudonym
from tests.mqtt.broker import Subscriber, mqtt_sink
from tests.support.site import running_site
from tests.support.waiting import until
from tests.sync.helpers import LAST_PLATE, PLATE, key_file, passage


async def test_mqtt_messages_carry_each_sinks_pseudonym(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    key_a, secret_a = key_file(tmp_path, "a")
    key_b, secret_b = key_file(tmp_path, "b")
    doc = {
        "upstream": [
            mqtt_sink(b.port, pseudonymise={"key_file": str(key_a)}),
            mqtt_sink(
                b.port,
                id="points",
                format="point",
                point_topic="pts/{device}/{point}",
                event_topic="pts/events/{kind}",
                status_topic="pts/status",
                pseudonymise={"key_file": str(key_b)},
            ),
        ]
    }
    async with Subscriber(b.port) as sub:
        async with running_site(tmp_path, doc, web=False) as rt:
            rt.hub.register_points([LAST_PLATE])
            rt.hub.ingest(passage(1))
            committed = await rt.journal.flush()
            sinks = rt.components["sync"].sinks
            await until(lambda: all(s.cursor >= committed for s in sinks.values()), 20, what="both sinks")
            await until(
                lambda: (
                    bool(sub.on("pts/gate-south/last_plate")) and bool(sub.on("pts/events/vehicle_passage"))
                ),
                10,
                what="the per-point messages",
            )
    batch = [orjson.loads(p) for p in sub.on("edge/test-site/records")]
    mine = pseudonym(secret_a, PLATE)
    assert [e["payload"]["plate"] for d in batch for e in d["events"] if e["kind"] == "vehicle_passage"] == [
        mine
    ]
    assert [r["value"] for d in batch for r in d["readings"] if r["point"] == LAST_PLATE.id] == [mine]
    theirs = pseudonym(secret_b, PLATE)
    assert theirs != mine
    assert [orjson.loads(p)["value"] for p in sub.on("pts/gate-south/last_plate")] == [theirs]
    assert [orjson.loads(p)["payload"]["plate"] for p in sub.on("pts/events/vehicle_passage")] == [theirs]
    assert not [t for t, p, _ in sub.messages if PLATE.encode() in p]
