"""OpenAPI paths of the sync routes (`edge.sync.api`): the status of every sink and consumer, the
dead-letter list, a manual retry and a deletion. Reading needs scope read, the retry and the
deletion scope write.

Declared by the sync plugin's `openapi` hook, so the document describes these routes exactly when
the plugin serves them. The schemas they name (`SinkStatus`, `ConsumerStatus`, `DeadLetter`) are
components of the core's document: the hook answers paths only."""

from __future__ import annotations

from typing import Any

from edge.api.openapi_base import ERRORS, MAX_SEQ, PROBLEM, WRITE_SECURITY, array, int_query, obj, ok

BASE = "/api/v1/sync"
MAX_DEAD_LETTERS = 1000  # a page of the dead-letter list (edge.sync.api)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def paths() -> dict[str, Any]:
    # no `security` on the reads: the document's default (scope read) applies, as it always did
    return {
        BASE: {
            "get": {
                "operationId": "syncStatus",
                "summary": "Per sink and consumer: cursor, backlog, last success/error, retry state (scope read)",
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "required": ["sinks", "consumers"],
                            "properties": {
                                "sinks": array(_ref("SinkStatus")),
                                "consumers": array(_ref("ConsumerStatus")),
                                "removed_sinks": array(
                                    obj(
                                        {"id": {"type": "string"}, "dead_letters": {"type": "integer"}},
                                        ["id", "dead_letters"],
                                    )
                                ),
                            },
                        }
                    ),
                    **ERRORS,
                },
            }
        },
        f"{BASE}/dead-letters": {
            "get": {
                "operationId": "deadLetters",
                "summary": "Records a receiver rejected as bad content (scope read)",
                "parameters": [
                    {"name": "sink", "in": "query", "required": False, "schema": {"type": "string"}},
                    int_query("limit", "page size", 1, MAX_DEAD_LETTERS),
                    int_query("before", "only ids below this (paging)", 1, MAX_SEQ),
                ],
                "responses": {
                    "200": ok(obj({"dead_letters": array(_ref("DeadLetter"))}, ["dead_letters"])),
                    **ERRORS,
                },
            }
        },
        f"{BASE}/dead-letters/{{id}}": {
            "delete": {
                "operationId": "deleteDeadLetter",
                "security": WRITE_SECURITY,
                "summary": "Delete one dead letter (scope write; audited)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": ok(
                        obj(
                            {
                                "id": {"type": "integer"},
                                "sink": {"type": "string"},
                                "deleted": {"type": "boolean"},
                            },
                            ["id", "sink", "deleted"],
                        )
                    ),
                    "404": PROBLEM,
                    **ERRORS,
                },
            }
        },
        f"{BASE}/dead-letters/{{id}}/retry": {
            "post": {
                "operationId": "retryDeadLetter",
                "security": WRITE_SECURITY,
                "summary": "Send one dead letter again (scope write)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": ok({"type": "object"}),
                    "404": PROBLEM,
                    "409": PROBLEM,
                    "502": PROBLEM,
                    **ERRORS,
                },
            }
        },
    }
