"""OpenAPI paths of the web UI's JSON endpoints: history, device points, point writes, events and
alert acknowledgements, the YAML helper (`edge.web.ui_api`) and the live SSE stream
(`edge.web.live`). Declared by the web UI plugin's `openapi` hook."""

from __future__ import annotations

from typing import Any

from edge.api.openapi_base import (
    EVENT_FIELDS,
    MAX_SEQ,
    PROBLEM,
    QUALITY,
    VALUE,
    WRITE_SECURITY,
    array,
    body,
    errors,
    obj,
    ok,
    op,
    or_problem,
    path,
    query,
)
from edge.web.ui_api import MAX_LIMIT

ACK = {
    "type": ["object", "null"],
    "description": "who acknowledged and their comment, for a caller whose class reaches the "
    "acknowledgement's (personal, or the acknowledged event's when higher); else only `ts` and `redacted`",
    "properties": {
        "user": {"type": "string"},
        "comment": {"type": "string"},
        "ts": {"type": "number"},
        "redacted": {"enum": ["personal", "sensitive"]},
    },
}
SINCE = {"type": "number", "description": "UTC epoch seconds"}
LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}

POINT_VIEW = obj(
    {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "type": {"type": "string"},
        "unit": {"type": ["string", "null"]},
        "writable": {"type": "boolean"},
        "privacy": {"enum": ["public", "personal", "sensitive"]},
        "description": {"type": ["string", "null"]},
        "precision": {
            "type": ["integer", "null"],
            "description": "decimals to show, when the profile declares them",
        },
        "value": VALUE,
        "quality": QUALITY,
        "ts": {"type": ["number", "null"]},
        "age_s": {"type": ["number", "null"]},
        "redacted": {"type": "string", "description": "set when the caller's role may not see the value"},
    },
    ["id", "name", "type", "writable", "privacy", "value"],
)
WRITE_RESULT = obj(
    {
        "point": {"type": "string"},
        "value": {"description": "the value as the driver took it, or as sent when refused"},
        "status": {"type": "string"},
        "reason": {"type": ["string", "null"]},
        "duration_ms": {"type": "number"},
    },
    ["point", "status"],
)
EVENT = obj({**EVENT_FIELDS, "ack": ACK}, ["seq", "ts", "kind", "source"])
YAML_ERROR = obj(
    {
        "error": obj(
            {
                "message": {"type": "string"},
                "line": {"type": ["integer", "null"]},
                "column": {"type": ["integer", "null"]},
            },
            ["message"],
        )
    },
    ["error"],
)


def paths() -> dict[str, Any]:
    return {
        "/api/v1/history": {
            "get": op(
                "history",
                "Readings of one point, or minute/hour buckets of them, oldest first, for a trend "
                "(scope read)",
                {
                    "200": ok(
                        obj(
                            {
                                "point": {"type": "string"},
                                "since": {"type": "number"},
                                "until": {"type": ["number", "null"]},
                                "resolution": {"enum": ["raw", "minute", "hour"]},
                                "readings": array(
                                    {
                                        "type": "array",
                                        "description": "[ts, value, quality]; for buckets [middle ts, "
                                        "average, 'good']",
                                        # one schema for the three items: schemathesis turns prefixItems
                                        # into draft-4 `items: [...]` and rejects its own result
                                        "items": VALUE,
                                        "minItems": 3,
                                        "maxItems": 3,
                                    }
                                ),
                                "ranges": array(
                                    {
                                        "type": "array",
                                        "description": "[min, max] of each bucket, aligned with readings",
                                        "items": {"type": "number"},
                                        "minItems": 2,
                                        "maxItems": 2,
                                    }
                                ),
                            },
                            ["point", "since", "readings", "resolution"],
                        )
                    ),
                    "404": PROBLEM,
                    "503": PROBLEM,
                    **errors(),
                },
                parameters=[
                    query("point", {"type": "string"}, "the point id, `device.point`", required=True),
                    query("since", SINCE, "readings at or after this time (default: an hour ago)"),
                    query("until", SINCE, "readings at or before this time (default: now)"),
                    query("limit", LIMIT, "at most this many readings or buckets, the newest (default 1000)"),
                    query(
                        "resolution",
                        {"enum": ["auto", "raw", "minute", "hour"]},
                        "auto (default): raw readings for a short range the journal scan covers, else "
                        "minute buckets, or hour buckets when minutes would exceed the limit; buckets "
                        "come from the trend index (every bucket that overlaps since..until) and carry `ranges`",
                    ),
                ],
            )
        },
        "/api/v1/devices/{id}/points": {
            "get": op(
                "devicePoints",
                "A device's status and its points with their latest values (scope read)",
                {
                    "200": ok(
                        obj(
                            {
                                "device": {"type": "object"},
                                "points": array(POINT_VIEW),
                                "now": {"type": "number"},
                            },
                            ["device", "points", "now"],
                        )
                    ),
                    "404": PROBLEM,
                    **errors(),
                },
                parameters=[path("id", "the device id")],
            )
        },
        "/api/v1/points/{id}/write": {
            "post": op(
                "writePoint",
                "Write a value to a writable point through its driver; audited (scope write)",
                {
                    **errors(body=True),
                    "200": ok(WRITE_RESULT, "The device took the value"),
                    "422": or_problem(
                        ok(WRITE_RESULT, "Refused: unknown or read-only point, or a value of the wrong type")
                    ),
                    "502": ok(WRITE_RESULT, "The device failed or is not running"),
                    "504": ok(WRITE_RESULT, "The device did not answer in time"),
                },
                parameters=[path("id", "the point id, `device.point`")],
                request_body=body(obj({"value": VALUE}, ["value"])),
                security=WRITE_SECURITY,
            )
        },
        "/api/v1/events": {
            "get": op(
                "events",
                "Events, newest first, with their acknowledgements (scope read)",
                {
                    "200": ok(
                        obj(
                            {
                                "events": array(EVENT),
                                "scanned_from_seq": {
                                    "type": "integer",
                                    "description": "the journal rows after this seq were scanned raw",
                                },
                                "indexed_to_seq": {
                                    "type": ["integer", "null"],
                                    "description": "events up to this seq came from the trend index "
                                    "(null: it is not running, the raw scan answered alone)",
                                },
                            },
                            ["events", "scanned_from_seq"],
                        )
                    ),
                    **errors(),
                },
                parameters=[
                    query("kind", {"type": "string"}, "only events of this kind"),
                    query("severity", {"type": "string"}, "only events of this severity"),
                    query("source", {"type": "string"}, "only events from this source"),
                    query("since", SINCE, "only events at or after this time"),
                    query(
                        "before",
                        {"type": "integer", "minimum": 1},
                        "only events with a smaller seq: the next page back from the last one listed",
                    ),
                    query("limit", LIMIT, "at most this many events (default 200)"),
                    query(
                        "unacked",
                        {"enum": ["0", "1", "true", "false"]},
                        "1 or true: the newest `limit` unacknowledged events",
                    ),
                ],
            )
        },
        "/api/v1/alerts/active": {
            "get": op(
                "activeAlerts",
                "Alerts whose rule's latest state is `fired`, with acknowledgements (scope read)",
                {"200": ok(obj({"alerts": array(EVENT)}, ["alerts"])), **errors()},
            )
        },
        "/api/v1/alerts/{seq}/ack": {
            "post": op(
                "ackAlert",
                "Acknowledge a fired alert by its journal seq, with a comment; audited (scope write). "
                "409: the seq is another event, an alert's clearing, or an alert already "
                "acknowledged (the first acknowledgement stays; the problem gives it under `ack`, "
                "as far as the caller may read it)",
                {
                    "200": ok(obj({"seq": {"type": "integer"}, "ack": ACK}, ["seq", "ack"])),
                    "404": PROBLEM,
                    "409": PROBLEM,
                    **errors(body=True),
                },
                parameters=[
                    path(
                        "seq",
                        "the event's journal seq",
                        {"type": "integer", "minimum": 1, "maximum": MAX_SEQ},
                    )
                ],
                request_body=body(obj({"comment": {"type": "string", "maxLength": 2000}})),
                security=WRITE_SECURITY,
            )
        },
        "/api/v1/ui/yaml": {
            "post": op(
                "uiYaml",
                "YAML text to data (with a located error) or data to YAML text, for the rule editor "
                "(scope read). The text is at most 64 KiB and is parsed in a worker process; 429 while "
                "two conversions run or wait",
                {
                    **errors(429, 503, body=True),
                    "200": ok(
                        {"oneOf": [obj({"data": {}}, ["data"]), obj({"text": {"type": "string"}}, ["text"])]}
                    ),
                    "422": or_problem(
                        ok(
                            YAML_ERROR,
                            "The text is not YAML, nests too deep, or has values JSON cannot carry",
                        )
                    ),
                },
                request_body=body(
                    {"oneOf": [obj({"text": {"type": "string"}}, ["text"]), obj({"data": {}}, ["data"])]}
                ),
                security=WRITE_SECURITY,
            )
        },
        "/api/v1/live": {
            "get": op(
                "live",
                "Server-Sent Events of records as they are journaled (scope read); never ends by itself",
                {
                    "200": {
                        "description": "event: hello, then `records` (a JSON array), `dropped` and keepalives",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **errors(),
                },
                parameters=[
                    query("device", {"type": "string"}, "only this device's readings and events"),
                    query("points", {"type": "string"}, "comma-separated point ids: only their readings"),
                    query("events", {"enum": ["0", "1", "true", "false"]}, "0 or false: no events"),
                ],
            )
        },
    }
