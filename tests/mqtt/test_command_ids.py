"""Downlink commands through mosquitto and a running gateway, on what a refusal costs: a request
refused as rate limited or too private keeps its id (sent again, it is judged again, not refused as
a replay), and a privacy refusal takes no rate token and is counted as `private`; a ThingsBoard
RPC refusal names the device and id the request gave."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from tests.modbus.servers import tcp_server
from tests.mqtt.broker import Subscriber, sink_of
from tests.mqtt.test_commands import COMMANDS, RESPONSES, site
from tests.mqtt.test_thingsboard_rpc import RPC
from tests.support.site import running_site
from tests.support.waiting import until


async def test_a_refused_request_keeps_its_id_and_privacy_takes_no_token(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    async with (
        tcp_server({1: {"holding": {0: 40, 1: 7, 2: 3}}}) as plc,
        Subscriber(b.port, RESPONSES) as answers,
        running_site(tmp_path, site(plc.port, b.port, command_rate=1), web=False) as rt,
    ):
        s = sink_of(rt)
        await until(lambda: s.status()["connected"], 20, what="the sink connected and subscribed")

        async def ask(rid: str, point: str, value: int) -> dict[str, Any]:
            n = len(answers.on(RESPONSES))
            req = {"id": rid, "point": point, "value": value, "ts": time.time()}
            async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
                await operator.publish(COMMANDS, orjson.dumps(req), qos=1)
            await until(lambda: len(answers.on(RESPONSES)) > n, 20, what=f"the answer to {rid}")
            answer: dict[str, Any] = orjson.loads(answers.on(RESPONSES)[n])
            return answer

        # one token a minute: a refusal for privacy must leave it to the next request
        private = await ask("p1", "boiler.occupant", 9)
        assert private["status"] == "refused" and private["reason"].startswith("private: "), private
        assert "sensitive" in private["reason"]
        ok = await ask("w1", "boiler.setpoint", 55)
        assert ok["status"] == "ok", ok
        assert await plc.get(1, "holding", 0) == [55]
        assert s.status()["commands_refused"] == {"private": 1}  # counted by class
        # the bucket is empty: refused, and the same request sent again is judged again
        for _ in range(2):
            limited = await ask("w2", "boiler.setpoint", 56)
            assert limited["status"] == "refused" and limited["reason"].startswith("rate limited"), limited
        # the privacy-refused one as well: still too private, not a replay
        again = await ask("p1", "boiler.occupant", 9)
        assert "sensitive" in again["reason"], again
        # an executed one does take its id
        replay = await ask("w1", "boiler.setpoint", 57)
        assert replay["reason"].startswith("replayed"), replay
        assert s.status()["commands_refused"] == {"private": 2, "rate limited": 2, "replayed": 1}
        assert await plc.get(1, "holding", 0) == [55]


async def test_a_thingsboard_rpc_refused_after_naming_its_device_and_id_is_answered_with_them(
    tmp_path: Path, broker
) -> None:  # type: ignore[no-untyped-def]
    """ThingsBoard matches a reply to its request by device and id: a request refused for a later
    part (its method, an unknown device) still names both in its reply."""
    import aiomqtt

    b = broker()
    async with tcp_server({1: {"holding": {0: 40, 1: 7, 2: 3}}}) as plc:
        doc = site(plc.port, b.port, format="thingsboard")
        doc["devices"][0]["name"] = "Boiler room"
        async with Subscriber(b.port, RPC) as sub, running_site(tmp_path, doc, web=False) as rt:
            s = sink_of(rt)
            await until(lambda: s.status()["connected"], 20, what="the sink connected and subscribed")
            requests = [
                {"device": "Boiler room", "data": {"id": 7, "method": "reboot", "params": {}}},
                {
                    "device": "Nowhere",
                    "data": {"id": 8, "method": "set", "params": {"point": "x", "value": 1}},
                },
                {"device": "Boiler room", "data": {"id": 9, "method": "set", "params": {"value": 1}}},
            ]
            async with aiomqtt.Client("127.0.0.1", b.port, identifier="thingsboard") as server:
                for req in requests:
                    await server.publish(RPC, orjson.dumps(req), qos=1)

            def replies() -> list[dict[str, Any]]:
                docs = [orjson.loads(p) for p in sub.on(RPC)]
                return [d for d in docs if "id" in d]

            await until(lambda: len(replies()) >= 3, 20, what="a reply to every request")
            got = replies()
            assert [(r["device"], r["id"]) for r in got] == [
                ("Boiler room", 7),
                ("Nowhere", 8),
                ("Boiler room", 9),
            ]
            assert all(r["data"]["reason"].startswith("malformed") for r in got), got
            assert await plc.get(1, "holding", 0, 3) == [40, 7, 3]
