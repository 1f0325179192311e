"""A retained message on a command topic (the sink's own or ThingsBoard's RPC topic) is never run:
it was published once and the broker would hand it over again on every connection. Under MQTT
3.1.1 it arrives flagged and is skipped, counted; under MQTT 5 the sink subscribes with retain
handling 2 and the broker does not send it at all. Requests published without the flag run."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.mqtt.broker import Subscriber, sink_of
from tests.mqtt.test_command_robust import COMMANDS, RESPONSES, RPC, answers, sim_site
from tests.support.site import running_site
from tests.support.waiting import until


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_retained_requests_never_run(tmp_path: Path, broker, protocol: str) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    now = time.time()
    retained = {"id": "kept", "point": "m1.cnt", "value": 77, "ts": now}
    rpc = {"device": "m1", "data": {"id": 77, "method": "set", "params": {"point": "cnt", "value": 78}}}
    async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
        await operator.publish(COMMANDS, orjson.dumps(retained), qos=1, retain=True)
        await operator.publish(RPC, orjson.dumps(rpc), qos=1, retain=True)
    async with (
        Subscriber(b.port, RESPONSES) as sub,
        Subscriber(b.port, RPC, client_id="rpc-watcher") as rpc_sub,
        running_site(tmp_path, sim_site(b.port, protocol=protocol), web=False) as rt,
    ):
        s = sink_of(rt)
        await until(lambda: s.status()["connected"], 20, what="the sink connected and subscribed")
        await until(lambda: "m1.cnt" in rt.hub.latest, 20, what="m1 sampled")
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            live = {"id": "live", "point": "m1.sp", "value": 44, "ts": time.time()}
            await operator.publish(COMMANDS, orjson.dumps(live), qos=1)
            await until(lambda: "live" in answers(sub), 20, what="the live request answered")
        # the sink reconnects: the retained messages are still on the broker, and still not run
        before = s.status()["connects"]
        assert s.client is not None
        s.client._client.disconnect()
        await until(
            lambda: s.status()["connects"] > before and s.status()["connected"], 20, what="reconnected"
        )
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            live = {"id": "live2", "point": "m1.sp", "value": 45, "ts": time.time()}
            await operator.publish(COMMANDS, orjson.dumps(live), qos=1)
            await until(lambda: "live2" in answers(sub), 20, what="the second live request answered")
        assert set(answers(sub)) == {"live", "live2"}
        replies = [orjson.loads(p) for p in rpc_sub.on(RPC)]
        assert not [r for r in replies if "data" in r and "method" not in r["data"]], replies
        assert rt.hub.latest["m1.cnt"].value == 1
        assert s.status()["commands_retained"] == (4 if protocol == "3.1.1" else 0)
        assert s.status()["commands_received"] == 2
