"""MQTT command requests run side by side across devices and one at a time, in order, per device:
writes queued for a slow device do not hold a request to a healthy one, and a request's age is
judged when it arrived, not when its device's turn comes, so a queue never expires it. At most
`max_requests` are in progress at once: one more is refused "busy", counted."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from tests.mqtt.broker import Subscriber, sink_of
from tests.mqtt.test_command_robust import COMMANDS, RESPONSES, answers, commanded_site, sim_site
from tests.support.site import running_site
from tests.support.waiting import until


async def test_a_slow_device_delays_only_its_own_requests(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    # slowdev answers a write in 3 s: its four queued writes take 12 s, more than the TTL
    async with (
        Subscriber(b.port, RESPONSES) as sub,
        running_site(tmp_path, sim_site(b.port, command_ttl="5s"), web=False) as rt,
    ):
        s = sink_of(rt)
        await until(lambda: s.status()["connected"], 20, what="the sink connected and subscribed")
        await until(lambda: "m1.sp" in rt.hub.latest, 20, what="m1 sampled")
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            for i in range(4):
                req = {"id": f"slow{i}", "point": "slowdev.sp", "value": i, "ts": time.time()}
                await operator.publish(COMMANDS, orjson.dumps(req), qos=1)
            fast = {"id": "fast", "point": "m1.sp", "value": 33, "ts": time.time()}
            await operator.publish(COMMANDS, orjson.dumps(fast), qos=1)
            await until(lambda: "fast" in answers(sub), 20, what="the healthy device's request answered")
            # answered while the slow device's writes were still queued
            assert not {"slow2", "slow3"} & set(answers(sub))
            await until(lambda: "slow3" in answers(sub), 30, what="every slow write answered")
        got = answers(sub)
        assert {
            rid: got[rid]["status"] for rid in ("fast", "slow0", "slow1", "slow2", "slow3")
        } == dict.fromkeys(("fast", "slow0", "slow1", "slow2", "slow3"), "ok"), got
        # one at a time, in the order they arrived: the last written is the last sent
        assert rt.hub.latest["slowdev.sp"].value == 3
        assert rt.hub.latest["m1.sp"].value == 33


async def test_requests_over_the_bound_are_refused_busy(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    async with commanded_site(tmp_path, b.port) as (sub, rt, s):
        s.max_requests = 1
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            for rid, point in (("slow", "slowdev.sp"), ("more", "slowdev.sp"), ("other", "m1.sp")):
                req = {"id": rid, "point": point, "value": 5, "ts": time.time()}
                await operator.publish(COMMANDS, orjson.dumps(req), qos=1)
            await until(lambda: {"slow", "more", "other"} <= set(answers(sub)), 20, what="every answer")
        got = answers(sub)
        assert got["slow"]["status"] == "ok"
        for rid in ("more", "other"):
            assert got[rid]["status"] == "refused" and got[rid]["reason"].startswith("busy"), got[rid]
        assert s.status()["commands_refused"] == {"busy": 2}
        # a busy refusal takes no id: the same request is taken once there is room
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            req = {"id": "other", "point": "m1.sp", "value": 6, "ts": time.time()}
            await operator.publish(COMMANDS, orjson.dumps(req), qos=1)
            await until(lambda: rt.hub.latest["m1.sp"].value == 6, 20, what="the request sent again ran")
