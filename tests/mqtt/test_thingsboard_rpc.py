"""ThingsBoard server-side RPC through mosquitto (`format: thingsboard`, `commands: true`): a
request on `v1/gateway/rpc` from a plain client writes a holding register on a pymodbus server
through the Modbus driver, and the reply comes back on the same topic in the gateway API's shape
with the request's id; a non-writable point, a replayed id and malformed requests are refused with
their reasons, counted, audited as `mqtt:<sink id>`, and change nothing on the device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from edge import audit
from tests.modbus.servers import tcp_server
from tests.mqtt.broker import Subscriber, sink_of
from tests.mqtt.test_commands import site
from tests.support.site import running_site
from tests.support.waiting import until

RPC = "v1/gateway/rpc"


def rpc(device: str, rid: Any, point: str, value: Any, method: str = "set") -> bytes:
    return orjson.dumps(
        {"device": device, "data": {"id": rid, "method": method, "params": {"point": point, "value": value}}}
    )


def reply_shape(doc: Any) -> bool:
    # {"device": "Device A", "id": 1, "data": {...}}
    return isinstance(doc, dict) and set(doc) == {"device", "id", "data"} and isinstance(doc["data"], dict)


async def test_thingsboard_rpc_writes_through_modbus_and_refusals_change_nothing(
    tmp_path: Path, broker
) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    async with tcp_server({1: {"holding": {0: 40, 1: 7, 2: 3}}}) as plc:
        doc = site(plc.port, b.port, format="thingsboard")
        doc["devices"][0]["name"] = "Boiler room"
        async with (
            Subscriber(b.port, RPC) as sub,
            running_site(tmp_path, doc, web=False) as rt,
        ):
            s = sink_of(rt)
            await until(lambda: s.status()["connected"], 20, what="the sink connected and subscribed")
            await until(lambda: "boiler.setpoint" in rt.hub.latest, 20, what="the boiler polled")
            requests = [
                rpc("Boiler room", 1, "setpoint", 55),
                rpc("Boiler room", 2, "power", 9, method="setValue"),
                rpc("Boiler room", 1, "setpoint", 98),
                rpc("Boiler room", 3, "setpoint", 97, method="reboot"),
                rpc("Nowhere", 4, "setpoint", 96),
                b"not json",
            ]
            async with aiomqtt.Client("127.0.0.1", b.port, identifier="thingsboard") as server:
                for body in requests:
                    await server.publish(RPC, body, qos=1)

            def replies() -> list[dict[str, Any]]:
                # the topic carries the requests too (one of them not JSON); a reply has a top-level id
                docs = [orjson.loads(p) for p in sub.on(RPC) if p != b"not json"]
                return [d for d in docs if isinstance(d, dict) and "id" in d]

            await until(lambda: len(replies()) >= 6, 20, what="a reply to every request")
            got = replies()
            assert len(got) == 6 and all(reply_shape(r) for r in got), got
            assert [r["data"]["status"] for r in got] == ["ok", "rejected", *["refused"] * 4]
            ok, not_writable, replayed, bad_method, unknown_device, not_json = got
            assert ok == {
                "device": "Boiler room",
                "id": 1,
                "data": {
                    "success": True,
                    "status": "ok",
                    "reason": "",
                    "point": "boiler.setpoint",
                    "value": 55,
                },
            }
            assert not_writable["id"] == 2 and not not_writable["data"]["success"]
            assert "not writable" in not_writable["data"]["reason"]
            assert replayed["id"] == 1 and replayed["data"]["reason"].startswith("replayed")
            assert bad_method["id"] == 3 and bad_method["data"]["reason"].startswith("malformed")
            assert "reboot" in bad_method["data"]["reason"]
            assert "Nowhere" in unknown_device["data"]["reason"]
            assert not_json["data"]["reason"].startswith("malformed")
            # only the accepted request reached the device
            assert await plc.get(1, "holding", 0, 3) == [55, 7, 3]
            st = s.status()
            assert st["commands_received"] == 6
            assert st["commands_refused"] == {"replayed": 1, "malformed": 3}
            assert st["commands_done"] == {"ok": 1, "rejected": 1}
            entries = [e for e in audit.entries(rt.state, 50) if e["actor"] == "mqtt:central"]
            assert len(entries) == 6 and {e["action"] for e in entries} == {"point_write"}
