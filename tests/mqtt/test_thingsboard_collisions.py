"""The thingsboard format through mosquitto when records share a millisecond: ThingsBoard keeps
one value per device, key and millisecond, so each record must reach it under a (ts, key) of its
own; readings without a value are left out and counted in the sink's status."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from edge.model import Event, Quality, Reading, Severity
from tests.mqtt.broker import Subscriber, mqtt_sink, sink_of
from tests.support.site import running_site
from tests.support.waiting import until

RULES = """rules:
  - id: bin-full
    when: bin-1.fill_pct
    if: value >= 85
    clear_if: value < 60
    notify: toggle
    severity: warning
    then:
      - alert: "{device}: bin is {value:.0f}% full"
    else:
      - event: {kind: bin_ok, message: "{device} back to {value:.0f}%"}
"""


def entries_of(sub: Subscriber) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for payload in sub.on("v1/gateway/telemetry"):
        for device, entries in orjson.loads(payload).items():
            out.setdefault(device, []).extend(entries)
    return out


def keyed(entries: list[dict[str, Any]]) -> Counter[tuple[int, str]]:
    """How often each (ts, key) was sent: above 1, ThingsBoard kept only the last."""
    return Counter((e["ts"], k) for e in entries for k in e["values"])


async def test_records_sharing_a_millisecond_all_reach_thingsboard(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bins.yaml").write_text(RULES)
    doc = {
        "devices": [
            {"id": "meter", "driver": "sim", "points": [{"name": "idle", "interval": "1h"}]},
            {"id": "bin-1", "driver": "sim", "points": [{"name": "fill_pct", "interval": "1h"}]},
        ],
        "rules": {"packs": ["rules/bins.yaml"]},
        "upstream": [mqtt_sink(b.port, format="thingsboard", batch={"max_items": 500, "max_age": "200ms"})],
    }
    async with Subscriber(b.port, "v1/gateway/#") as sub:
        async with running_site(tmp_path, doc, web=False) as rt:
            t = round(time.time()) + 0.25  # whole milliseconds
            ms = round(t * 1000)
            # one batch: two readings of one point in one millisecond, a reading in the next
            # millisecond, a failed read, and three alerts of one source stamped alike (a poll)
            rt.hub.ingest(
                [
                    Reading(t, "meter.power", 1.0),
                    Reading(t, "meter.on", True),
                    Reading(t, "meter.power", 2.0),
                    Reading(t + 0.001, "meter.power", 3.0),
                    Reading(t, "meter.power", None, Quality.BAD),
                    *(Event("alert", "pump.flow", Severity.WARNING, {"n": n}, t) for n in range(3)),
                ]
            )
            # the rule's toggle: its clearing reading raises `bin_ok` and the cleared alert at once
            rt.hub.ingest([Reading(t, "bin-1.fill_pct", 90.0)])
            rt.hub.ingest([Reading(t + 60, "bin-1.fill_pct", 40.0)])

            def rule_events() -> list[dict[str, Any]]:
                return [
                    r
                    for r in rt.journal.tail(200)
                    if r.get("type") == "event" and r.get("source") == "bin-full"
                ]

            await until(
                lambda: len(rule_events()) >= 3, 10, what="the rule's alert, bin_ok and cleared alert"
            )
            committed = await rt.journal.flush()
            await until(lambda: sink_of(rt).cursor >= committed, 20, what="every batch acknowledged")
            status = sink_of(rt).status()
            events = rule_events()

            def arrived() -> bool:
                sent = entries_of(sub)
                values = [
                    k
                    for device in ("meter", "pump", "bin-full")
                    for e in sent.get(device, [])
                    for k in e["values"]
                ]
                return values.count("power") >= 3 and values.count("seq") >= 3 + len(events)

            await until(arrived, 10, what="every telemetry entry at the subscriber")
    clearing = [e for e in events if e["ts"] == t + 60]
    assert len(clearing) == 2, events  # the case where two events share a millisecond
    assert status["left_out"] == {"failed_read": 1}

    sent = entries_of(sub)
    for device, entries in sent.items():
        assert max(keyed(entries).values()) == 1, (device, entries)  # nothing overwrites
    meter = {(e["ts"], k): v for e in sent["meter"] for k, v in e["values"].items()}
    power = sorted((ts, v) for (ts, k), v in meter.items() if k == "power")
    # in seq order: the second reading of the millisecond moves to the next one, so the reading
    # that was stamped there finds it taken and moves on too
    assert power == [(ms, 1.0), (ms + 1, 2.0), (ms + 2, 3.0)]
    assert meter[(ms, "on")] is True
    pump = sorted(sent["pump"], key=lambda e: e["ts"])
    assert [e["ts"] for e in pump] == [ms, ms + 1, ms + 2]
    assert [orjson.loads(e["values"]["event_payload"]) for e in pump] == [{"n": 0}, {"n": 1}, {"n": 2}]
    rule_seqs = sorted(e["values"]["seq"] for e in sent["bin-full"])
    assert rule_seqs == sorted(e["seq"] for e in events)
    assert len({e["ts"] for e in sent["bin-full"] if e["ts"] >= ms + 60_000}) == 2
