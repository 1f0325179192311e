"""An oversized command never reaches the gateway whole: over MQTT 5 the sink's CONNECT gives a
Maximum Packet Size, so mosquitto drops a huge request to it instead of sending it, and the
requests after it are answered as usual."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from tests.modbus.servers import tcp_server
from tests.mqtt.broker import Subscriber, sink_of
from tests.mqtt.test_commands import COMMANDS, RESPONSES, site
from tests.support.site import running_site
from tests.support.waiting import until


async def test_a_huge_command_is_dropped_by_the_broker_not_read(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    async with (
        tcp_server({1: {"holding": {0: 40, 1: 7, 2: 3}}}) as plc,
        Subscriber(b.port, COMMANDS, client_id="watcher") as seen,
        Subscriber(b.port, RESPONSES) as answers,
        running_site(tmp_path, site(plc.port, b.port), web=False) as rt,
    ):
        s = sink_of(rt)
        await until(lambda: s.status()["connected"], 20, what="the sink connected and subscribed")
        huge = {"id": "huge", "point": "boiler.setpoint", "value": "x" * 2_000_000, "ts": time.time()}
        small = {"id": "small", "point": "boiler.setpoint", "value": 58, "ts": time.time()}
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            await operator.publish(COMMANDS, orjson.dumps(huge), qos=1)
            await operator.publish(COMMANDS, orjson.dumps(small), qos=1)
        # the broker took both (another subscriber gets them) ...
        await until(lambda: len(seen.on(COMMANDS)) >= 2, 20, what="both requests at the broker")
        # ... and the gateway only the small one, answered after the huge one would have been
        await until(lambda: answers.on(RESPONSES), 20, what="the answer to the small request")
        got = [orjson.loads(p) for p in answers.on(RESPONSES)]
        assert [(a["id"], a["status"]) for a in got] == [("small", "ok")], got
        assert s.status()["commands_received"] == 1
        assert await plc.get(1, "holding", 0) == [58]
