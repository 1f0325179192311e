"""The OpenAPI 3.1 document of the whole HTTP API, served at `/api/v1/openapi.json`.

Written as data (not derived from handlers) and checked against the app's router by
tests/sync/test_openapi.py, so the two cannot drift apart. This module holds the pull paths and
assembles the document; the core's other areas are in `openapi_web` (core, accounts, tokens,
audit), `openapi_blobs` and `openapi_privacy`. A plugin that adds routes describes them in its own
`openapi.py` and declares it through the `openapi` hook of its manifest (`edge.plugins`), so the
document holds a feature's paths exactly when the installation has the feature.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from edge import __version__
from edge.api.openapi_base import (
    BODY_ERRORS,
    COMPONENTS,
    ERRORS,
    EVENT_FIELDS,
    JSON,
    PROBLEM,
    READ_SECURITY,
    array,
    obj,
)
from edge.plugins import registry

_PROBLEM = PROBLEM
_ERRORS = ERRORS
_JSON = JSON


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _int(name: str, description: str, minimum: int, maximum: int, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "integer", "minimum": minimum, "maximum": maximum},
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


#: present (true) only on records committed while the gateway's clock was not trusted
CLOCK_UNTRUSTED = {
    "type": "boolean",
    "const": True,
    "description": "committed while the gateway's clock was not trusted: its ts may be wrong",
}


#: Named schemas: code generators name a model after its schema, so each record variant and each
#: listed item is a component of its own (inline variants made two models with one name).
def _schemas() -> dict[str, Any]:
    return {
        "ReadingRecord": obj(
            {
                "seq": {"type": "integer"},
                "ts": {"type": "number", "description": "UTC epoch seconds"},
                "type": {"type": "string", "const": "reading"},
                "point": {"type": "string"},
                "value": {"type": ["number", "integer", "boolean", "string", "null"]},
                "quality": {"type": "string", "enum": ["good", "bad", "stale"]},
                "clock_untrusted": CLOCK_UNTRUSTED,
            },
            ["seq", "ts", "type", "point", "value", "quality"],
        ),
        "EventRecord": obj(
            {
                **EVENT_FIELDS,
                "type": {"type": "string", "const": "event"},
                "payload": {"type": "object", "additionalProperties": True},
                "clock_untrusted": CLOCK_UNTRUSTED,
            },
            ["seq", "ts", "type", "kind", "source", "severity", "payload"],
        ),
        "Record": {
            "oneOf": [_ref("ReadingRecord"), _ref("EventRecord")],
            "discriminator": {
                "propertyName": "type",
                "mapping": {
                    "reading": "#/components/schemas/ReadingRecord",
                    "event": "#/components/schemas/EventRecord",
                },
            },
        },
        "PointInfo": obj(
            {
                "id": {"type": "string"},
                "device": {"type": "string"},
                "name": {"type": "string"},
                "type": {"type": "string", "enum": ["float", "int", "bool", "str"]},
                "unit": {"type": "string"},
                "writable": {"type": "boolean"},
                "privacy": {"type": "string", "enum": ["public", "personal", "sensitive"]},
                "description": {"type": "string"},
                "precision": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "maximum": 10,
                    "description": "decimals to show, as the point or its profile declares; null: derived from the unit",
                },
            },
            ["id", "device", "name", "type", "privacy"],
        ),
        "LatestValue": obj(
            {
                "point": {"type": "string"},
                "ts": {"type": ["number", "null"]},
                "value": {"type": ["number", "integer", "boolean", "string", "null"]},
                "quality": {"type": ["string", "null"]},
            },
            ["point"],
        ),
        # the sync plugin's paths (edge.sync.openapi) name these three: a plugin's `openapi` hook
        # answers paths only, so the schemas they refer to stay among the document's components
        "SinkStatus": obj(
            {
                "id": {"type": "string"},
                "type": {"type": "string"},
                "cursor": {"type": "integer"},
                "backlog_rows": {"type": "integer"},
                "oldest_unsent_age_s": {"type": ["number", "null"]},
                "last_success": {"type": ["number", "null"]},
                "last_error": {"type": ["string", "null"]},
                "in_flight": {"type": "integer"},
                "batch_items": {"type": "integer", "description": "records per batch now, sized by the link"},
            },
            ["id", "type", "cursor", "backlog_rows"],
        ),
        "ConsumerStatus": obj(
            {
                "id": {"type": "string"},
                "cursor": {"type": "integer"},
                "backlog_rows": {"type": "integer"},
                "oldest_unsent_age_s": {"type": ["number", "null"]},
                "last_ack": {"type": ["number", "null"]},
            },
            ["id", "cursor", "backlog_rows"],
        ),
        "DeadLetter": obj(
            {
                "id": {"type": "integer"},
                "sink": {"type": "string"},
                "seq": {"type": "integer"},
                "record": _ref("Record"),
                "status": {"type": ["integer", "null"], "description": "the receiver's HTTP status"},
                "response": {"type": ["string", "null"]},
                "response_withheld": {
                    "type": "string",
                    "enum": ["personal", "sensitive"],
                    "description": "the record's class, when the receiver's answer (which may quote it) is "
                    "withheld from this caller; response is null then. Absent when the answer is shown",
                },
                "ts": {"type": "number"},
                "retried": {"type": ["number", "null"]},
                "privacy": {
                    "type": ["string", "null"],
                    "enum": ["public", "personal", "sensitive", None],
                    "description": "the record's class: a personal or sensitive dead letter is deleted at its "
                    "class's retention from `ts` (null until the next retention pass classifies one stored "
                    "before classes were)",
                },
            },
            ["id", "sink", "seq", "record"],
        ),
    }


def _core_document() -> dict[str, Any]:
    """The core's part of the document, built when it is asked for (a gateway nobody asks keeps no copy)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Community Edge API",
            "version": __version__,
            "description": (
                "The gateway's HTTP API. Central platforms read the journal from their own cursor "
                "(scope pull) and acknowledge what they stored; every record has a monotonic `seq`, "
                "de-duplicate by it, and records above the consumer's privacy class are withheld. The "
                "web UI and scripts use the rest with an API token or a UI session (unsafe requests "
                "from a session also send X-CSRF-Token). Errors are application/problem+json."
            ),
        },
        "security": READ_SECURITY,
        "paths": {
            "/api/v1/stream": {
                "get": {
                    "operationId": "stream",
                    "security": [{"bearer": []}],
                    "summary": "Records after a seq, for the calling consumer (scope pull)",
                    "parameters": [
                        _int(
                            "after",
                            "return records with seq > after; default: the consumer's cursor",
                            0,
                            2**62,
                        ),
                        _int("limit", "at most this many records (journal rows) per page", 1, 10000),
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "description": "long-poll: wait up to this many seconds for new data",
                            "schema": {"type": "number", "minimum": 0, "maximum": 60},
                        },
                        {
                            "name": "ack",
                            "in": "query",
                            "required": False,
                            "description": (
                                "true: first acknowledge `after` (required then) as POST "
                                "/api/v1/consumers/{id}/ack would, durably, then answer the page "
                                "after it: one request a page for a consumer catching up; 409 "
                                "below the cursor, 400 past the last committed seq"
                            ),
                            "schema": {"type": "boolean", "default": False},
                        },
                    ],
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "required": ["items", "next", "more"],
                                "properties": {
                                    "items": array(_ref("Record")),
                                    "next": {
                                        "type": "integer",
                                        "description": "pass as `after` for the next page",
                                    },
                                    "more": {"type": "boolean"},
                                },
                            }
                        ),
                        "409": _PROBLEM,
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/consumers/{id}/ack": {
                "post": {
                    "operationId": "ack",
                    "security": [{"bearer": []}],
                    "summary": "Move the consumer's cursor forward (scope pull, own id only)",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["seq"],
                                    "additionalProperties": False,
                                    "properties": {"seq": {"type": "integer", "minimum": 0}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "properties": {
                                    "consumer": {"type": "string"},
                                    "cursor": {"type": "integer"},
                                    "committed": {"type": "integer"},
                                },
                            }
                        ),
                        "409": _PROBLEM,
                        **BODY_ERRORS,
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/points": {
                "get": {
                    "operationId": "points",
                    "summary": "Point metadata (scope pull or read)",
                    "responses": {
                        "200": _ok(obj({"points": array(_ref("PointInfo"))}, ["points"])),
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/latest": {
                "get": {
                    "operationId": "latest",
                    "summary": "Latest value of every point (scope pull or read)",
                    "parameters": [
                        {"name": "device", "in": "query", "required": False, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _ok(obj({"latest": array(_ref("LatestValue"))}, ["latest"])),
                        "409": _PROBLEM,
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document (any credential)",
                    "responses": {"200": _ok({"type": "object"}), "401": _PROBLEM},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (scope read)",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": _PROBLEM,
                        "403": _PROBLEM,
                    },
                }
            },
        },
        "components": {
            **COMPONENTS,
            "schemas": {**COMPONENTS["schemas"], **_schemas()},
        },
    }


class PathsRefused(ValueError):
    """Two parts of the installation describe the same path or operation id, or a plugin's hook
    answers something other than a mapping of paths."""


def document() -> dict[str, Any]:
    """The document of this installation: the core's paths and those of every plugin with an
    `openapi` hook whose modules are installed (PathsRefused names the plugin at fault)."""
    from edge.api import openapi_blobs, openapi_privacy, openapi_web

    doc = copy.deepcopy(_core_document())
    paths: dict[str, Any] = doc["paths"]
    path_owner = dict.fromkeys(paths, "the core")
    op_owner = {op["operationId"]: "the core" for ops in paths.values() for op in ops.values()}
    areas: list[tuple[str, Mapping[str, Any]]] = [
        ("the core", openapi_web.paths()),
        ("the core", openapi_blobs.paths()),
        ("the core", openapi_privacy.paths()),
    ]
    for plugin in registry().with_hook("openapi"):
        if plugin.openapi is not None:
            areas.append((f"plugin {plugin.name!r}", plugin.openapi()))
    for owner, area in areas:
        if not isinstance(area, Mapping):
            raise PathsRefused(
                f"{owner}: the openapi hook answered {type(area).__name__}; "
                "it must answer a mapping of paths ('/api/v1/...') to their operations"
            )
        for path, ops in area.items():
            if not isinstance(path, str) or not path.startswith("/"):
                raise PathsRefused(
                    f"{owner}: openapi path {path!r} does not start with '/'; "
                    "the hook answers a mapping of paths ('/api/v1/...') to their operations"
                )
            if path in path_owner:
                raise PathsRefused(f"{owner} describes {path}, which {path_owner[path]} already describes")
            for method, op in ops.items():
                op_id = op.get("operationId")
                if op_id is None:
                    continue
                if op_id in op_owner:
                    raise PathsRefused(
                        f"{owner}: operationId {op_id!r} of {method.upper()} {path} is already "
                        f"used by {op_owner[op_id]}"
                    )
                op_owner[op_id] = owner
            path_owner[path] = owner
            paths[path] = copy.deepcopy(ops)
    return doc
