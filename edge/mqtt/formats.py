"""Journal rows to MQTT messages, each within the sink's size cap (pure: no client, no loop).

`json`: the HTTP sink's batch document (format community-edge/batch/v1), split over as many
messages as the cap needs, each naming the seq range it covers. `thingsboard`: ThingsBoard's
gateway API telemetry, `{"<device>": [{"ts": ms, "values": {...}}]}`. `point`: one message per
reading on its own topic (and one per event).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from edge.store.records import Row
from edge.sync.http_sink import FORMAT, batch_record, reading_value

TB_CONNECT = "v1/gateway/connect"
TB_TELEMETRY = "v1/gateway/telemetry"
TB_ATTRIBUTES = "v1/gateway/attributes"
TB_RPC = "v1/gateway/rpc"  # server-side RPC requests in, the gateway's replies out


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False


class Unsendable(ValueError):
    """One record cannot be a message: it is dead-lettered, the stream goes on."""


class TooLarge(Unsendable):
    """One record alone does not fit in a message."""

    def __init__(self, what: str, size: int, cap: int) -> None:
        super().__init__(f"{what} needs a {size}-byte message; max_message_bytes is {cap}")


class BadTopic(Unsendable):
    """A record's topic (from its event kind or source) is not one MQTT can publish on."""


#: MQTT's limit on a topic name, in UTF-8 bytes
MAX_TOPIC = 65535


def topic_problem(topic: str) -> str:
    """Why `topic` cannot be published on ("" when it can): a `+` or `#` wildcard, a NUL
    character, too long."""
    if "+" in topic or "#" in topic:
        return "contains a + or # wildcard"
    if "\0" in topic:
        return "contains a NUL character"
    if len(topic) * 4 > MAX_TOPIC and len(topic.encode()) > MAX_TOPIC:
        return f"is over {MAX_TOPIC} bytes"
    return ""


def json_messages(
    gateway: str, sink: str, topic: str, rows: list[Row], first: int, last: int, cap: int
) -> list[Message]:
    """The batch document(s) for `rows` (covering first..last); a message ends before the record
    that would take it over `cap` bytes."""
    head = orjson.dumps({"format": FORMAT, "gateway": gateway, "sink": sink})[:-1]
    overhead = len(head) + 120  # ranges, sent_at and the two array keys
    out: list[Message] = []
    readings: list[bytes] = []
    events: list[bytes] = []
    size = overhead
    start = first

    def flush(end: int) -> None:
        body = b"".join(
            [
                head,
                b',"first_seq":%d,"last_seq":%d,"sent_at":%s' % (start, end, orjson.dumps(time.time())),
                b',"readings":[',
                b",".join(readings),
                b'],"events":[',
                b",".join(events),
                b"]}",
            ]
        )
        out.append(Message(topic, body))

    prev = first - 1
    for row in rows:
        seq, kind = row[0], row[5]
        item = orjson.dumps(batch_record(row))
        target = readings if kind is None else events
        if overhead + len(item) > cap:
            raise TooLarge(f"record seq {seq}", overhead + len(item), cap)
        if size + len(item) + 1 > cap and (readings or events):
            flush(prev)
            readings, events, size, start = [], [], overhead, prev + 1
            target = readings if kind is None else events
        target.append(item)
        size += len(item) + 1
        prev = seq
    if readings or events:
        flush(last)
    return out


def _device_of(source: str) -> str:
    return source.partition(".")[0]


class TbMessages(list[Message]):
    """The thingsboard format's messages for a batch, with how many readings it left out."""

    #: readings without a value (a failed read): ThingsBoard telemetry has no null
    failed_reads: int = 0


#: the values of an event's entry; a record's keys may not meet another's at one millisecond
TB_EVENT_KEYS = frozenset(("event", "severity", "seq", "event_payload"))


def thingsboard_messages(names: Mapping[str, str], rows: list[Row], cap: int) -> TbMessages:
    """`v1/gateway/telemetry` messages: per device, one entry per timestamp (ms) with the values
    of its points then; an event is an entry of its source device whose values are `event`,
    `severity`, `seq` and `event_payload` (the event's JSON as a string). ThingsBoard keys
    telemetry by device, key and millisecond (a later value replaces an earlier one), so a record
    whose key(s) that device already has at its millisecond in this batch (two readings of one
    point, two events of one source) goes to the next millisecond where they are free. Readings
    without a value are left out and counted (`failed_reads`). `names`: device id -> ThingsBoard
    device name."""
    per_device: dict[str, dict[int, dict[str, Any]]] = {}
    failed = 0
    for seq, ts, point, value, quality, kind, severity, payload in rows:
        device, _, name = point.partition(".")
        entries = per_device.setdefault(names.get(device, device), {})
        ms = round(ts * 1000)
        entry = entries.get(ms)
        if kind is None:
            if value is None:
                failed += 1
                continue
            value, _q = reading_value(value, quality)
            if entry is None:
                entries[ms] = {name: value}
                continue
            while entry is not None and name in entry:  # taken: the next free millisecond
                ms += 1
                entry = entries.get(ms)
            if entry is None:
                entries[ms] = {name: value}
            else:
                entry[name] = value
        else:
            values = {
                "event": kind,
                "severity": severity or "info",
                "seq": seq,
                "event_payload": payload or "{}",
            }
            while entry is not None and not TB_EVENT_KEYS.isdisjoint(entry):
                ms += 1
                entry = entries.get(ms)
            if entry is None:
                entries[ms] = values
            else:
                entry.update(values)
    out = TbMessages(
        _pack_by_key(
            TB_TELEMETRY,
            (
                (device, orjson.dumps({"ts": ms, "values": values}))
                for device, entries in per_device.items()
                for ms, values in entries.items()
            ),
            cap,
        )
    )
    out.failed_reads = failed
    return out


def _pack_by_key(topic: str, items: Iterable[tuple[str, bytes]], cap: int) -> list[Message]:
    """`{"key": [item, ...], ...}` messages of at most `cap` bytes, items kept in order."""
    out: list[Message] = []
    groups: dict[str, list[bytes]] = {}
    size = 2

    def flush() -> None:
        parts = [orjson.dumps(k) + b":[" + b",".join(v) + b"]" for k, v in groups.items()]
        out.append(Message(topic, b"{" + b",".join(parts) + b"}"))

    for key, item in items:
        extra = len(item) + 1 + (0 if key in groups else len(orjson.dumps(key)) + 4)
        if 2 + extra > cap:
            raise TooLarge(f"an entry of device {key}", 2 + extra, cap)
        if size + extra > cap:
            flush()
            groups, size = {}, 2
            extra = len(item) + 1 + len(orjson.dumps(key)) + 4
        groups.setdefault(key, []).append(item)
        size += extra
    if groups:
        flush()
    return out


def thingsboard_connect(device_name: str) -> Message:
    return Message(TB_CONNECT, orjson.dumps({"device": device_name}))


def thingsboard_attributes(device_name: str, attributes: Mapping[str, Any]) -> Message:
    return Message(TB_ATTRIBUTES, orjson.dumps({device_name: dict(attributes)}))


def point_messages(
    gateway: str, sink: str, point_topic: str, event_topic: str, rows: list[Row], cap: int
) -> list[Message]:
    """One message per reading on `point_topic` (`{"seq", "ts", "value", "quality"}`) and one per
    event on `event_topic` (the json format's event object)."""
    out: list[Message] = []
    for row in rows:
        seq, point, kind = row[0], row[2], row[5]
        record = batch_record(row)
        if kind is None:
            device, _, name = point.partition(".")
            topic = point_topic.format(site=gateway, sink=sink, device=device, point=name)
            del record["point"]  # the topic names it
        else:
            topic = event_topic.format(site=gateway, sink=sink, kind=kind, source=point)
        if problem := topic_problem(topic):
            what = f"point {point!r}" if kind is None else f"event kind {kind!r} from {point!r}"
            raise BadTopic(f"record seq {seq}: {what} makes topic {topic[:200]!r}, which {problem}")
        body = orjson.dumps(record)
        if len(body) > cap:
            raise TooLarge(f"record seq {seq}", len(body), cap)
        out.append(Message(topic, body))
    return out


def devices_in(rows: list[Row]) -> list[str]:
    """Device ids the rows name, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.setdefault(_device_of(row[2]), None)
    return list(seen)
