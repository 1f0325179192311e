"""An MQTT command's answer is never lost for good: one that cannot be published (the broker is
down when the write ends) is published on the next connection, and the same request sent again
with its id is answered with the answer it was given, without a second write; a different
request reusing the id is still refused as a replay."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from tests.mqtt.broker import Subscriber, sink_of
from tests.mqtt.test_command_robust import COMMANDS, RESPONSES, commanded_site, sim_site
from tests.support.site import running_site
from tests.support.waiting import until


def all_answers(sub: Subscriber) -> list[dict[str, object]]:
    return [orjson.loads(p) for p in sub.on(RESPONSES)]


def connected(sink: Any) -> bool:
    return bool(sink.status()["connected"])


def answered(sub: Subscriber, n: int) -> bool:
    return len(all_answers(sub)) >= n


async def test_an_answer_lost_in_a_broker_restart_is_recovered(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    async with commanded_site(tmp_path, b.port) as (sub, rt, s):
        request = orjson.dumps({"id": "la-1", "point": "slowdev.sp", "value": 9, "ts": time.time()})
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            await operator.publish(COMMANDS, request, qos=1)
        # slowdev takes 3 s to write: the broker goes down while it does
        await until(lambda: s._device_turns, 20, what="the write to slowdev under way")
        b.stop()
        await until(lambda: not s._requests, 20, what="the write done while the broker is down")
        b.start()
        await until(lambda: [a for a in all_answers(sub) if a["id"] == "la-1"], 30, what="the kept answer")
        first = [a for a in all_answers(sub) if a["id"] == "la-1"]
        assert first[0]["status"] == "ok"
        # counted once its PUBACK is in, which may come after the subscriber has it
        await until(lambda: s.status()["answers_resent"] == 1, 20, what="the kept answer acknowledged")
        assert s.status()["answers_unsent"] == 0
        # the platform sends the request again: same answer, no second write
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            await operator.publish(COMMANDS, request, qos=1)
            other = {"id": "la-1", "point": "slowdev.sp", "value": 10, "ts": time.time()}
            await operator.publish(COMMANDS, orjson.dumps(other), qos=1)
            await until(
                lambda: len([a for a in all_answers(sub) if a["id"] == "la-1"]) >= 3, 30, what="answers"
            )
        again, different = [a for a in all_answers(sub) if a["id"] == "la-1"][1:]
        assert again == first[0]
        assert different["status"] == "refused" and str(different["reason"]).startswith("replayed")
        st = s.status()
        assert st["commands_done"] == {"ok": 1}
        assert st["commands_answered_again"] == 1
        assert rt.hub.latest["slowdev.sp"].value == 9


async def test_a_stored_answer_survives_a_restart_of_the_gateway(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    request = orjson.dumps({"id": "kept-1", "point": "m1.sp", "value": 5, "ts": time.time()})
    async with Subscriber(b.port, RESPONSES) as sub:
        for run in (1, 2):
            async with running_site(tmp_path, sim_site(b.port), web=False) as rt:
                s = sink_of(rt)
                await until(partial(connected, s), 20, what="the sink connected and subscribed")
                async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
                    await operator.publish(COMMANDS, request, qos=1)
                    await until(partial(answered, sub, run), 20, what="the answer")
                done = s.status()["commands_done"]
                assert done == ({"ok": 1} if run == 1 else {})
                # what was asked is kept as a digest: the request's value is not stored beside its id
                with rt.state.lock:
                    (fingerprint,) = rt.state.conn.execute(
                        "SELECT fingerprint FROM mqtt_requests WHERE id='kept-1'"
                    ).fetchone()
                assert "m1.sp" not in fingerprint and len(fingerprint) == 64
        first, again = all_answers(sub)
        assert first["status"] == "ok" and again == first


async def test_an_answer_that_cannot_be_published_is_dropped_counted(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    """An answer the client refuses for itself (not the link) is dropped and counted: kept, it
    would hold every answer after it."""
    import aiomqtt

    b = broker()
    async with (
        Subscriber(b.port, RESPONSES) as sub,
        running_site(tmp_path, sim_site(b.port), web=False) as rt,
    ):
        s = sink_of(rt)
        await until(partial(connected, s), 20, what="the sink connected and subscribed")
        client = s.client
        real_publish = client.publish

        async def refusing(topic: str, payload: bytes, *args: Any, **kw: Any) -> None:
            if b'"bad-1"' in payload:
                raise ValueError("refused by the client")
            await real_publish(topic, payload, *args, **kw)

        client.publish = refusing
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            for rid in ("bad-1", "good-1"):
                req = {"id": rid, "point": "m1.sp", "value": 7, "ts": time.time()}
                await operator.publish(COMMANDS, orjson.dumps(req), qos=1)
            await until(partial(answered, sub, 1), 20, what="the next answer")
        assert [a["id"] for a in all_answers(sub)] == ["good-1"]
        assert s.status()["answers_dropped"] == 1 and s.status()["answers_unsent"] == 0
