"""Building blocks every part of the OpenAPI document shares: parameters, bodies, answers,
credentials, a point's value and quality.

The core's areas (`openapi_web`, `openapi_blobs`, the pull paths in `openapi`) and each
plugin's `openapi` hook (its own `openapi.py` beside its routes) write their paths with these, so
every operation describes errors and credentials the same way the handlers produce them
(`edge.api.problem`, `edge.api.auth`).
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
PROBLEM = {"$ref": "#/components/responses/Problem"}
#: every authenticated operation can answer these (bad input, no credential, wrong scope/CSRF, a
#: full disk: a change, or the audit entry a read of personal data writes, could not be stored)
ERRORS = {"400": PROBLEM, "401": PROBLEM, "403": PROBLEM, "507": PROBLEM}
#: an operation with a JSON body can also answer these (read_json): too slow (408), too large
#: (413), not JSON (415), nested deeper than 64 levels (422)
BODY_ERRORS = {"408": PROBLEM, "413": PROBLEM, "415": PROBLEM, "422": PROBLEM}
MAX_SEQ = 2**62
#: a point's value as the hub holds it, and its quality (null before the first reading)
VALUE = {"type": ["number", "integer", "boolean", "string", "null"]}
QUALITY = {"enum": ["good", "bad", "stale", None]}

#: who may call: a bearer token, or a UI session cookie
READ_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]
#: unsafe methods from a UI session also echo the session's CSRF token
WRITE_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"session": [], "csrf": []}]
PUBLIC: list[dict[str, list[str]]] = []


def ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


#: the fields of an event record (`edge buffer tail --json`, the pull API, the UI's events list)
EVENT_FIELDS: dict[str, Any] = {
    "seq": {"type": "integer"},
    "ts": {"type": "number"},
    "type": {"const": "event"},
    "kind": {"type": "string"},
    "source": {"type": "string"},
    "severity": {"type": "string"},
    "payload": {"type": "object"},
}


def obj(
    properties: dict[str, Any], required: list[str] | None = None, *, closed: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    if closed:
        out["additionalProperties"] = False
    return out


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def int_query(
    name: str, description: str, minimum: int, maximum: int, required: bool = False
) -> dict[str, Any]:
    return query(name, {"type": "integer", "minimum": minimum, "maximum": maximum}, description, required)


def path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def body(schema: dict[str, Any], media: str = JSON, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"required": True, "content": {media: {"schema": schema}}}
    if description:
        out["description"] = description
    return out


def op(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    request_body: dict[str, Any] | None = None,
    security: list[dict[str, list[str]]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    """One operation; security defaults to read (GET) credentials, pass WRITE_SECURITY for changes."""
    out: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if description:
        out["description"] = description
    if parameters:
        out["parameters"] = parameters
    if request_body:
        out["requestBody"] = request_body
    out["responses"] = responses
    out["security"] = READ_SECURITY if security is None else security
    return out


def or_problem(response: dict[str, Any]) -> dict[str, Any]:
    """`response` (an operation's own JSON answer for a status) that may also come as a problem
    document, e.g. a 422 of the operation's own shape or read_json's 422 for a too-deep body."""
    out = dict(response)
    out["content"] = {
        **response["content"],
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}},
    }
    return out


def errors(*statuses: int, body: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = dict(ERRORS)
    if body:
        out.update(BODY_ERRORS)
    out.update({str(s): PROBLEM for s in statuses})
    return out


OK_TRUE = ok(obj({"ok": {"const": True}}, ["ok"]))

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (`ce_...`, scopes read/write/rules/admin/pull) or a pull "
            "consumer's token from the site file (scope pull)",
        },
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": "edge_session",
            "description": "The web UI's session (POST /api/v1/auth/login); scopes by role. A GET "
            "sent with `X-Edge-Background: 1` (a page's own periodic refresh) does not count as the "
            "session's use: the session still ends after 12 h without one",
        },
        "csrf": {
            "type": "apiKey",
            "in": "header",
            "name": "X-CSRF-Token",
            "description": "The session's CSRF token (`csrf` in the login answer); unsafe requests "
            "authenticated by the session cookie must send it",
        },
    },
    "schemas": {
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
}
