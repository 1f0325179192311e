"""The OpenAPI 3.1 document of the sync and pull APIs, served at `/api/v1/openapi.json`.

Written as data here (not derived from handlers) and checked against the app's router by
tests/sync/test_openapi.py, so the two cannot drift apart.
"""

from __future__ import annotations

import copy
from typing import Any

from edge import __version__

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_ERRORS = {"400": _PROBLEM, "401": _PROBLEM, "403": _PROBLEM}
_JSON = "application/json"


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


RECORD = {
    "oneOf": [
        {
            "type": "object",
            "required": ["seq", "ts", "type", "point", "value", "quality"],
            "properties": {
                "seq": {"type": "integer"},
                "ts": {"type": "number", "description": "UTC epoch seconds"},
                "type": {"const": "reading"},
                "point": {"type": "string"},
                "value": {"type": ["number", "integer", "boolean", "string", "null"]},
                "quality": {"enum": ["good", "bad", "stale"]},
            },
        },
        {
            "type": "object",
            "required": ["seq", "ts", "type", "kind", "source", "severity", "payload"],
            "properties": {
                "seq": {"type": "integer"},
                "ts": {"type": "number"},
                "type": {"const": "event"},
                "kind": {"type": "string"},
                "source": {"type": "string"},
                "severity": {"type": "string"},
                "payload": {"type": "object"},
            },
        },
    ]
}

_DOC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Community Edge pull and sync API",
        "version": __version__,
        "description": (
            "Central platforms read the gateway's journal from their own cursor and acknowledge what "
            "they stored. Every record has a monotonic `seq`; de-duplicate by it. Errors are "
            "application/problem+json. Records above the consumer's privacy class are withheld."
        ),
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/stream": {
            "get": {
                "operationId": "stream",
                "summary": "Records after a seq, for the calling consumer (scope pull)",
                "parameters": [
                    _int(
                        "after", "return records with seq > after; default: the consumer's cursor", 0, 2**62
                    ),
                    _int("limit", "at most this many records (journal rows) per page", 1, 10000),
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "description": "long-poll: wait up to this many seconds for new data",
                        "schema": {"type": "number", "minimum": 0, "maximum": 60},
                    },
                ],
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "required": ["items", "next", "more"],
                            "properties": {
                                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                                "next": {
                                    "type": "integer",
                                    "description": "pass as `after` for the next page",
                                },
                                "more": {"type": "boolean"},
                            },
                        }
                    ),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/consumers/{id}/ack": {
            "post": {
                "operationId": "ack",
                "summary": "Move the consumer's cursor forward (scope pull, own id only)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
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
                    "413": _PROBLEM,
                    "415": _PROBLEM,
                    **_ERRORS,
                },
            }
        },
        "/api/v1/points": {
            "get": {
                "operationId": "points",
                "summary": "Point metadata (scope pull or read)",
                "responses": {
                    "200": _ok({"type": "object", "properties": {"points": {"type": "array"}}}),
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
                    "200": _ok({"type": "object", "properties": {"latest": {"type": "array"}}}),
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
        "/api/v1/sync": {
            "get": {
                "operationId": "syncStatus",
                "summary": "Per sink and consumer: cursor, backlog, last success/error, retry state (scope read)",
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "required": ["sinks", "consumers"],
                            "properties": {"sinks": {"type": "array"}, "consumers": {"type": "array"}},
                        }
                    ),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/sync/dead-letters": {
            "get": {
                "operationId": "deadLetters",
                "summary": "Records a receiver rejected as bad content (scope read)",
                "parameters": [
                    {"name": "sink", "in": "query", "required": False, "schema": {"type": "string"}},
                    _int("limit", "page size", 1, 1000),
                    _int("before", "only ids below this (paging)", 1, 2**62),
                ],
                "responses": {
                    "200": _ok({"type": "object", "properties": {"dead_letters": {"type": "array"}}}),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/sync/dead-letters/{id}/retry": {
            "post": {
                "operationId": "retryDeadLetter",
                "summary": "Send one dead letter again (scope write)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _ok({"type": "object"}),
                    "404": _PROBLEM,
                    "409": _PROBLEM,
                    "502": _PROBLEM,
                    **_ERRORS,
                },
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
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Record": RECORD,
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            },
        },
        "responses": {
            "Problem": {
                "description": "An error (RFC 9457)",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
        },
    },
}


def document() -> dict[str, Any]:
    return copy.deepcopy(_DOC)
