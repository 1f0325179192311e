"""Downlink commands through mosquitto: a request published by a plain MQTT client writes a holding
register on a pymodbus server through the Modbus driver and is answered; a non-writable point, a
wrong type, an expired, a replayed, a malformed and a too-private request are refused with their
reasons, counted and audited, and change nothing on the device."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from edge import audit
from tests.modbus.servers import tcp_server
from tests.mqtt.broker import Subscriber, mqtt_sink, sink_of
from tests.support.site import running_site
from tests.support.waiting import until

COMMANDS = "edge/test-site/commands"
RESPONSES = "edge/test-site/responses"


def site(modbus_port: int, broker_port: int, **sink: Any) -> dict[str, Any]:
    return {
        "devices": [
            {
                "id": "boiler",
                "driver": "modbus",
                "connection": {"transport": "tcp", "host": "127.0.0.1", "port": modbus_port},
                "poll": "100ms",
                "points": [
                    {
                        "name": "setpoint",
                        "table": "holding",
                        "address": 0,
                        "type": "uint16",
                        "writable": True,
                    },
                    {"name": "power", "table": "holding", "address": 1, "type": "uint16"},
                    {
                        "name": "occupant",
                        "table": "holding",
                        "address": 2,
                        "type": "uint16",
                        "writable": True,
                        "privacy": "sensitive",
                    },
                ],
            }
        ],
        "upstream": [mqtt_sink(broker_port, commands=True, command_ttl="30s", **sink)],
    }


async def test_commands_write_through_modbus_and_refusals_change_nothing(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    async with (
        tcp_server({1: {"holding": {0: 40, 1: 7, 2: 3}}}) as plc,
        Subscriber(b.port, RESPONSES) as answers,
        running_site(tmp_path, site(plc.port, b.port), web=False) as rt,
    ):
        s = sink_of(rt)
        await until(lambda: s.status()["connected"], 20, what="the sink connected and subscribed")
        await until(lambda: "boiler.setpoint" in rt.hub.latest, 20, what="the boiler polled")
        now = time.time()
        requests: list[Any] = [
            {"id": "r1", "point": "boiler.setpoint", "value": 55, "ts": now},
            {"id": "r2", "point": "boiler.power", "value": 9, "ts": now},
            {"id": "r3", "point": "boiler.setpoint", "value": "hot", "ts": now},
            {"id": "r4", "point": "boiler.setpoint", "value": 99, "ts": now - 120},
            {"id": "r1", "point": "boiler.setpoint", "value": 98, "ts": now},
            {"id": "r5", "point": "boiler.occupant", "value": 1, "ts": now},
            {"point": "boiler.setpoint", "value": 97},
        ]
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            for req in [*requests, b"not json"]:
                body = req if isinstance(req, bytes) else orjson.dumps(req)
                await operator.publish(COMMANDS, body, qos=1)
        await until(lambda: len(answers.on(RESPONSES)) >= 8, 20, what="an answer to every request")
        got = [orjson.loads(p) for p in answers.on(RESPONSES)]
        assert [a["status"] for a in got] == [
            "ok",
            "rejected",
            "rejected",
            "refused",
            "refused",
            "refused",
            "refused",
            "refused",
        ]
        ok, not_writable, wrong_type, expired, replayed, private, no_id, not_json = got
        assert ok == {"id": "r1", "point": "boiler.setpoint", "status": "ok", "reason": "", "value": 55}
        assert "not writable" in not_writable["reason"]
        assert wrong_type["id"] == "r3" and "hot" in wrong_type["reason"]
        assert expired["reason"].startswith("expired") and expired["id"] == "r4"
        assert replayed["reason"].startswith("replayed") and replayed["id"] == "r1"
        assert "max_privacy" in private["reason"]
        assert no_id["reason"].startswith("malformed") and '"id"' in no_id["reason"]
        assert not_json["reason"].startswith("malformed")
        # only the accepted request reached the device
        assert await plc.get(1, "holding", 0, 3) == [55, 7, 3]
        st = s.status()
        assert st["commands_received"] == 8
        assert (
            st["commands_refused"]
            == {
                "expired": 1,
                "replayed": 1,
                "malformed": 2,
                "point 'boiler.occupant' is sensitive; this sink's max_privacy is personal": 1,
            }
            or sum(st["commands_refused"].values()) == 5
        )
        assert st["commands_done"] == {"ok": 1, "rejected": 2}
        entries = [e for e in audit.entries(rt.state, 50) if e["actor"] == "mqtt:central"]
        assert len(entries) == 8 and {e["action"] for e in entries} == {"point_write"}
        # the log is kept for good: a private point's value stays out of it, its class says why
        details = {e["target"]: e["detail"] for e in entries if e["detail"]["status"] in ("ok", "refused")}
        assert (
            details["boiler.occupant"]["value_class"] == "sensitive"
            and "value" not in details["boiler.occupant"]
        )
        assert [e["detail"]["value"] for e in entries if e["detail"]["status"] == "ok"] == [55]


async def test_commands_over_the_rate_are_refused(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    async with (
        tcp_server({1: {"holding": {0: 40, 1: 7, 2: 3}}}) as plc,
        Subscriber(b.port, RESPONSES) as answers,
        running_site(tmp_path, site(plc.port, b.port, command_rate=2), web=False) as rt,
    ):
        s = sink_of(rt)
        await until(lambda: s.status()["connected"], 20, what="the sink connected and subscribed")
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            for i, value in enumerate((41, 42, 43)):
                req = {"id": f"q{i}", "point": "boiler.setpoint", "value": value, "ts": time.time()}
                await operator.publish(COMMANDS, orjson.dumps(req), qos=1)
        await until(lambda: len(answers.on(RESPONSES)) >= 3, 20, what="three answers")
        got = [orjson.loads(p) for p in answers.on(RESPONSES)]
        assert [a["status"] for a in got] == ["ok", "ok", "refused"]
        assert got[2]["reason"].startswith("rate limited") and "2 requests a minute" in got[2]["reason"]
        assert await plc.get(1, "holding", 0) == [42]


def _connected(rt: Any) -> Callable[[], bool]:
    return lambda: bool(sink_of(rt).status()["connected"])


def _answered(answers: Subscriber) -> Callable[[], bool]:
    return lambda: bool(answers.on(RESPONSES))


async def test_a_replay_after_a_restart_is_still_a_replay(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    """The request ids taken survive a restart of the gateway: the same request published again
    within its TTL, to the restarted gateway, gets the answer it was given and does not reach the
    device again."""
    import aiomqtt

    b = broker()
    async with tcp_server({1: {"holding": {0: 40, 1: 7, 2: 3}}}) as plc:
        doc = site(plc.port, b.port)
        request = {"id": "once", "point": "boiler.setpoint", "value": 61, "ts": time.time()}
        for run in range(2):
            async with (
                Subscriber(b.port, RESPONSES) as answers,
                running_site(tmp_path, doc, web=False) as rt,
            ):
                await until(_connected(rt), 20, what="the sink connected and subscribed")
                if run == 1:
                    await plc.set(1, "holding", 0, [40])  # what a replay would overwrite
                async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
                    await operator.publish(COMMANDS, orjson.dumps(request), qos=1)
                await until(_answered(answers), 20, what="the answer")
                answer = orjson.loads(answers.on(RESPONSES)[0])
            if run == 0:
                assert answer["status"] == "ok"
                assert await plc.get(1, "holding", 0) == [61]
            else:  # the answer it was given, and no second write to the device
                assert answer["status"] == "ok" and answer["value"] == 61, answer
                assert await plc.get(1, "holding", 0) == [40]
