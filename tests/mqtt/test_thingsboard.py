"""The thingsboard format through mosquitto: every message matches the shapes of ThingsBoard's
gateway MQTT API (thingsboard.io/docs/reference/gateway-api/: connect, attributes, telemetry),
a device is connected before its first telemetry, with its name from the site."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from edge.model import Event, Reading, Severity
from tests.mqtt.broker import Subscriber, mqtt_sink, sink_of
from tests.support.site import running_site
from tests.support.waiting import until

SCALAR = (int, float, str, bool)


def connect_shape(doc: Any) -> bool:
    # {"device": "Device A"} (an optional "type" is the only other documented key)
    return isinstance(doc, dict) and isinstance(doc.get("device"), str) and set(doc) <= {"device", "type"}


def attributes_shape(doc: Any) -> bool:
    # {"Device A": {"fw_version": "1.0", "battery": 87}, ...}
    return isinstance(doc, dict) and all(
        isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, SCALAR) for k, x in v.items())
        for v in doc.values()
    )


def telemetry_shape(doc: Any) -> bool:
    # {"Device A": [{"ts": 1483228800000, "values": {"temperature": 42}}], ...}
    return isinstance(doc, dict) and all(
        isinstance(entries, list)
        and all(
            isinstance(e, dict)
            and set(e) == {"ts", "values"}
            and isinstance(e["ts"], int)
            and isinstance(e["values"], dict)
            and all(isinstance(x, SCALAR) for x in e["values"].values())
            for e in entries
        )
        for entries in doc.values()
    )


SHAPES = {
    "v1/gateway/connect": connect_shape,
    "v1/gateway/attributes": attributes_shape,
    "v1/gateway/telemetry": telemetry_shape,
}


async def test_thingsboard_gateway_api_shapes(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    doc = {
        "devices": [
            {
                "id": "meter",
                "name": "Main meter",
                "driver": "sim",
                "points": [{"name": "idle", "interval": "1h"}],
            }
        ],
        "upstream": [mqtt_sink(b.port, format="thingsboard", max_message_bytes="2KiB")],
    }
    async with Subscriber(b.port, "v1/gateway/#") as sub:
        async with running_site(tmp_path, doc, web=False) as rt:
            t = round(time.time()) + 0.5  # whole milliseconds
            batch = [Reading(t + i, "meter.power", 100.0 + i) for i in range(60)]
            batch += [Reading(t, "meter.on", True), Reading(t, "pump.flow", 3)]
            rt.hub.ingest(batch)
            rt.hub.publish_event(Event("alarm", "pump.flow", Severity.WARNING, {"why": "dry"}, t + 1))
            committed = await rt.journal.flush()
            await until(lambda: sink_of(rt).cursor >= committed, 20, what="the batch acknowledged")

            def telemetry() -> dict[str, list[dict[str, Any]]]:
                out: dict[str, list[dict[str, Any]]] = {}
                for payload in sub.on("v1/gateway/telemetry"):
                    for device, entries in orjson.loads(payload).items():
                        out.setdefault(device, []).extend(entries)
                return out

            await until(
                lambda: len(telemetry().get("Main meter", [])) >= 60, 10, what="the meter's telemetry"
            )
            await until(lambda: "pump" in telemetry(), 10, what="the pump's telemetry")
    for topic, payload, _retained in sub.messages:
        assert SHAPES[topic](orjson.loads(payload)), (topic, payload)
        assert len(payload) <= 2048
    assert len(sub.on("v1/gateway/telemetry")) > 1  # split by max_message_bytes
    topics = [t for t, _p, _r in sub.messages]
    connects = [orjson.loads(p)["device"] for p in sub.on("v1/gateway/connect")]
    assert {"Main meter", "pump"} <= set(connects)
    first_telemetry = topics.index("v1/gateway/telemetry")
    assert topics.index("v1/gateway/connect") < first_telemetry

    def by_ts(entries: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for e in entries:  # one timestamp's values may come in two batches
            out.setdefault(e["ts"], {}).update(e["values"])
        return out

    meter = by_ts(telemetry()["Main meter"])
    t_ms = round(t * 1000)
    assert meter[t_ms] == {"power": 100.0, "on": True}
    assert meter[t_ms + 59_000] == {"power": 159.0}
    pump = by_ts(telemetry()["pump"])
    assert pump[t_ms] == {"flow": 3}
    alarm = pump[t_ms + 1000]
    assert alarm["event"] == "alarm" and alarm["severity"] == "warning"
    assert orjson.loads(alarm["event_payload"]) == {"why": "dry"}
    attributes = [orjson.loads(p) for p in sub.on("v1/gateway/attributes")]
    assert {"Main meter": {"gateway": "test-site", "device_id": "meter"}} in attributes


async def test_a_device_added_or_renamed_by_a_reload_goes_by_its_name(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    """SIGHUP's reload replaces the device list: a device it adds, and one it renames, are
    connected and sent under the names the site gives them now, not under their ids."""
    from edge.service import reload
    from tests.support.site import site_file

    b = broker()

    def device(dev_id: str, name: str) -> dict[str, Any]:
        return {"id": dev_id, "name": name, "driver": "sim", "points": [{"name": "idle", "interval": "1h"}]}

    doc: dict[str, Any] = {
        "devices": [device("meter", "Main meter")],
        "upstream": [mqtt_sink(b.port, format="thingsboard")],
    }
    async with Subscriber(b.port, "v1/gateway/#") as sub:
        async with running_site(tmp_path, doc, web=False) as rt:
            doc["devices"] = [device("meter", "Meter of block 3"), device("gate", "North gate")]
            path = site_file(tmp_path, doc)
            assert await reload(rt, str(path)) == []
            t = round(time.time())
            rt.hub.ingest([Reading(t, "meter.power", 7.0), Reading(t, "gate.open", True)])
            committed = await rt.journal.flush()
            await until(lambda: sink_of(rt).cursor >= committed, 20, what="the batch acknowledged")

            def sent_to() -> set[str]:
                return {d for p in sub.on("v1/gateway/telemetry") for d in orjson.loads(p)}

            await until(lambda: {"Meter of block 3", "North gate"} <= sent_to(), 10, what="telemetry by name")
    connects = {orjson.loads(p)["device"] for p in sub.on("v1/gateway/connect")}
    assert {"Meter of block 3", "North gate"} <= connects
    assert not {"meter", "gate"} & (sent_to() | connects)
