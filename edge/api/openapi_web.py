"""OpenAPI paths of the core routes (`edge.api.core_routes`), accounts and sessions
(`edge.api.account_routes`), API tokens (`edge.api.tokens`) and the audit log."""

from __future__ import annotations

from typing import Any

from edge.api.openapi_base import (
    MAX_SEQ,
    OK_TRUE,
    PROBLEM,
    PUBLIC,
    WRITE_SECURITY,
    array,
    body,
    errors,
    int_query,
    obj,
    ok,
    op,
    path,
    query,
)

ROLES = ["admin", "technician", "viewer"]
SCOPES = ["admin", "pull", "read", "rules", "write"]
USER_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.@-]{1,64}$"}
PASSWORD = {"type": "string", "minLength": 10, "maxLength": 1024}
NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_NUM = {"type": ["number", "null"]}

ME = {
    "type": ["object", "null"],
    "properties": {
        "name": {"type": "string"},
        "kind": {"enum": ["user", "token", "consumer"]},
        "role": NULLABLE_STR,
        "scopes": array({"type": "string"}),
    },
}
SESSION_STARTED = obj(
    {
        "user": obj({"name": {"type": "string"}, "role": {"enum": ROLES}}),
        "csrf": {"type": "string"},
        "next": {
            "type": "string",
            "description": "where the page goes now: the request's `next` if it is a path on this "
            "gateway, else /",
        },
    },
    ["user", "csrf"],
)
NEXT = {"type": "string", "description": "the page to open after logging in (a path on this gateway)"}
#: a throttled login, setup or password change: wait `retry_after` seconds (also the Retry-After header)
THROTTLED = {
    "description": "Too many attempts; wait the Retry-After header's seconds (also `retry_after` in the body)",
    "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    "content": {
        "application/problem+json": {
            "schema": {
                "allOf": [
                    {"$ref": "#/components/schemas/Problem"},
                    obj({"retry_after": {"type": "integer", "minimum": 1}}),
                ]
            }
        }
    },
}
USER = obj(
    {
        "name": {"type": "string"},
        "role": {"type": "string"},
        "created": {"type": "number"},
        "created_by": {"type": "string"},
        "failures": {"type": "integer"},
        "locked": {"type": "boolean", "description": "logins at this name are slowed by recent failures"},
        "locked_until": NULLABLE_NUM,
        "disabled": {"type": "boolean"},
        "last_login": NULLABLE_NUM,
    },
    ["name", "role"],
)
TOKEN = obj(
    {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "scopes": array({"type": "string"}),
        "consumer": NULLABLE_STR,
        "consumer_declared": {
            "type": "boolean",
            "description": "a pull token's consumer is declared under consumers: in the site file "
            "(present when the token has a consumer); one that is not gets only public records",
        },
        "created": {"type": "number"},
        "created_by": {"type": "string"},
        "owner": {
            "type": ["string", "null"],
            "description": "the user whose demotion, disabling or deletion revokes this token; null: "
            "made at the console",
        },
        "last_used": NULLABLE_NUM,
        "revoked": NULLABLE_NUM,
    },
    ["id", "name", "scopes"],
)
#: an API token a user's demotion, disabling or deletion revoked
REVOKED_TOKEN = obj(
    {"id": {"type": "integer"}, "name": {"type": "string"}, "scopes": array({"type": "string"})},
    ["id", "name", "scopes"],
)
#: the answer to a change of a user: the API tokens it revoked (made on that user's authority)
USER_CHANGED = ok(
    obj(
        {
            "ok": {"const": True},
            "tokens_revoked": {"type": "integer", "minimum": 0, "description": "how many were revoked"},
            "revoked_tokens": array(REVOKED_TOKEN),
        },
        ["ok", "tokens_revoked", "revoked_tokens"],
    )
)
SITE_CONSUMER = obj(
    {
        "id": {"type": "string"},
        "description": {"type": "string"},
        "max_privacy": {"type": "string", "enum": ["public", "personal", "sensitive"]},
        "token_from": {"type": "string", "enum": ["env", "file"], "description": "never the token"},
        "pseudonymised": {"type": "boolean"},
        "scopes": array({"type": "string"}),
        "source": {"type": "string", "const": "site"},
    },
    ["id", "max_privacy", "token_from", "pseudonymised", "scopes", "source"],
)
SESSION = obj(
    {
        "id": {"type": "string", "description": "opaque; neither the cookie value nor its stored hash"},
        "user": {"type": "string"},
        "created": {"type": "number"},
        "last_seen": {"type": "number"},
        "address": {"type": "string"},
        "current": {"type": "boolean", "description": "the session making this request"},
    },
    ["id", "user", "created", "last_seen", "address", "current"],
)
AUDIT_ENTRY = obj(
    {
        "id": {"type": "integer"},
        "ts": {"type": "number"},
        "actor": {"type": "string"},
        "action": {"type": "string"},
        "target": {"type": "string"},
        "detail": {"type": "object"},
        "redacted": {
            "type": "boolean",
            "description": "true: the caller is below personal (an API token without admin): actor "
            "and target read `redacted`, and the detail keeps only its numbers and flags",
        },
        "privacy": {"type": "string", "description": "the class of what a redacted entry withholds"},
    },
    ["id", "ts", "actor", "action", "target"],
)


def paths() -> dict[str, Any]:
    return {
        "/healthz": {
            "get": op(
                "healthz",
                "Liveness and readiness (no credential). 200 `degraded` while starting or stopping, "
                "or while the journal's retention steps fail (`reason`, `retention_failing`: records "
                "are still journaled, those past their retention are kept); 503 while starting, or "
                "`failing` with a `reason` while the journal cannot commit",
                {
                    "200": ok(
                        obj(
                            {
                                "status": {"enum": ["ok", "degraded"]},
                                "site": {"type": "string"},
                                "committed_seq": {"type": "integer"},
                                "reason": {"type": "string"},
                                "retention_failing": {"type": "string"},
                            },
                            ["status", "site", "committed_seq"],
                        )
                    ),
                    "503": ok({"type": "object"}, "Not ready yet (starting), or failing (`reason`)"),
                },
                security=PUBLIC,
            )
        },
        "/api/v1/status": {
            "get": op(
                "status",
                "The runtime's status: site, journal, components (scope read)",
                {"200": ok({"type": "object"}), **errors()},
            )
        },
        "/api/v1/devices": {
            "get": op(
                "devices",
                "Every device with its driver health and restarts (scope read)",
                {"200": ok(obj({"devices": array({"type": "object"})}, ["devices"])), **errors()},
            )
        },
        "/api/v1/auth/state": {
            "get": op(
                "authState",
                "Who is calling, whether first-run setup is pending, the site (no credential needed)",
                {
                    "200": ok(
                        obj(
                            {
                                "setup_required": {"type": "boolean"},
                                "user": ME,
                                "csrf": NULLABLE_STR,
                                "site": obj(
                                    {
                                        "id": {"type": "string"},
                                        "name": {"type": "string"},
                                        "timezone": {"type": "string"},
                                    }
                                ),
                            },
                            ["setup_required", "user", "csrf", "site"],
                        )
                    ),
                    # a request that sends a bearer token is authenticated by it alone
                    "401": PROBLEM,
                },
                security=PUBLIC,
            )
        },
        "/api/v1/auth/setup": {
            "post": op(
                "authSetup",
                "First run: create the admin with the setup code from the gateway's log; starts a session",
                {
                    "201": ok(SESSION_STARTED, "Admin created, session cookie set"),
                    **errors(409, 422, body=True),
                    "429": THROTTLED,
                },
                request_body=body(
                    obj(
                        {"code": {"type": "string"}, "name": USER_NAME, "password": PASSWORD, "next": NEXT},
                        ["code", "name", "password"],
                    )
                ),
                security=PUBLIC,
            )
        },
        "/api/v1/auth/login": {
            "post": op(
                "authLogin",
                "Log in with name and password; sets the session cookie and answers the CSRF token",
                {
                    "200": ok(SESSION_STARTED, "Logged in, session cookie set"),
                    **errors(body=True),
                    "429": THROTTLED,
                },
                request_body=body(
                    obj(
                        {"name": {"type": "string"}, "password": {"type": "string"}, "next": NEXT},
                        ["name", "password"],
                    )
                ),
                security=PUBLIC,
            )
        },
        "/api/v1/auth/logout": {
            "post": op(
                "authLogout",
                "End the calling session (any credential)",
                {"200": OK_TRUE, **errors()},
                security=WRITE_SECURITY,
            )
        },
        "/api/v1/auth/password": {
            "post": op(
                "authPassword",
                "Change the session user's own password; ends its other sessions (UI session only)",
                {
                    "200": ok(obj({"ok": {"const": True}, "csrf": {"type": "string"}}, ["ok", "csrf"])),
                    **errors(422, body=True),
                    "429": THROTTLED,
                },
                request_body=body(obj({"old": {"type": "string"}, "new": PASSWORD}, ["old", "new"])),
                security=WRITE_SECURITY,
            )
        },
        "/api/v1/users": {
            "get": op(
                "users",
                "User accounts (scope admin)",
                {"200": ok(obj({"users": array(USER)}, ["users"])), **errors()},
            ),
            "post": op(
                "addUser",
                "Add a user account (scope admin); role defaults to viewer",
                {
                    "201": ok(
                        obj({"name": {"type": "string"}, "role": {"type": "string"}}, ["name", "role"])
                    ),
                    **errors(422, body=True),
                },
                request_body=body(
                    obj(
                        {"name": USER_NAME, "role": {"enum": ROLES}, "password": PASSWORD},
                        ["name", "password"],
                    )
                ),
                security=WRITE_SECURITY,
            ),
        },
        "/api/v1/users/{name}": {
            "patch": op(
                "changeUser",
                "Change a user's role or password, disable or unlock it (scope admin)",
                {"200": USER_CHANGED, **errors(422, body=True)},
                description="A lower role revokes the API tokens made on the user's authority that hold "
                "a scope the new role lacks, disabling revokes all of them: the answer lists them. 422 "
                "Invalid account data, or Nothing to change for a body that changes nothing ({}, a null "
                "role, unlock false)",
                parameters=[path("name", "the user name")],
                request_body=body(
                    obj(
                        {
                            "role": {"enum": ROLES},
                            "password": PASSWORD,
                            "disabled": {"type": "boolean"},
                            "unlock": {"type": "boolean"},
                        },
                        closed=True,
                    )
                ),
                security=WRITE_SECURITY,
            ),
            "delete": op(
                "deleteUser",
                "Delete a user and its sessions; never the last admin (scope admin)",
                {"200": USER_CHANGED, **errors(422)},
                description="Every API token made on the user's authority is revoked too: the answer "
                "lists them",
                parameters=[path("name", "the user name")],
                security=WRITE_SECURITY,
            ),
        },
        "/api/v1/audit": {
            "get": op(
                "audit",
                "The audit log, newest first (scope admin or write)",
                {"200": ok(obj({"entries": array(AUDIT_ENTRY)}, ["entries"])), **errors()},
                description="Entries of a caller below personal have actor, target and text withheld; "
                "filtering by actor is then 403",
                parameters=[
                    int_query("limit", "at most this many entries (default 200)", 1, 1000),
                    int_query("before", "only entries with id below this (paging)", 1, MAX_SEQ),
                    query(
                        "actor",
                        {"type": "string"},
                        "only entries by this actor (403 for a caller below personal)",
                    ),
                    query("action", {"type": "string"}, "only entries of this action"),
                ],
            )
        },
        "/api/v1/tokens": {
            "get": op(
                "tokens",
                "API tokens, without their secrets (scope admin)",
                {
                    "200": ok(
                        obj(
                            {"tokens": array(TOKEN), "consumers": array(SITE_CONSUMER)},
                            ["tokens", "consumers"],
                        )
                    ),
                    **errors(),
                },
            ),
            "post": op(
                "createToken",
                "Create an API token; the plaintext is in this answer only (scope admin)",
                {
                    "201": ok(
                        obj(
                            {
                                "token": {"type": "string"},
                                "name": {"type": "string"},
                                "scopes": array({"enum": SCOPES}),
                                "consumer": {"type": "string", "description": "with a consumer"},
                                "consumer_declared": {
                                    "type": "boolean",
                                    "description": "the consumer is declared under consumers: in the "
                                    "site file (with a consumer)",
                                },
                                "warning": {
                                    "type": "string",
                                    "description": "a pull token whose consumer is not declared: "
                                    "check it for a typo; until declared it gets only public records",
                                },
                                "declared_consumers": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "description": "the consumers the site file declares (with `warning`)",
                                },
                            },
                            ["token", "name", "scopes"],
                        )
                    ),
                    **errors(422, body=True),
                },
                request_body=body(
                    obj(
                        {
                            "name": {"type": "string", "minLength": 1, "pattern": r"\S"},
                            "scopes": {
                                "type": "array",
                                "items": {"enum": SCOPES},
                                "minItems": 1,
                                "uniqueItems": True,
                            },
                            "consumer": {
                                "type": ["string", "null"],
                                "description": "the consumer id whose cursor a pull token moves "
                                "(required with scope pull); one that names an upstream sink of the site "
                                "or a component's cursor (kpi) is refused: 422 Invalid consumer",
                            },
                        },
                        ["name", "scopes"],
                    )
                ),
                security=WRITE_SECURITY,
            ),
        },
        "/api/v1/sessions": {
            "get": op(
                "sessions",
                "Live UI sessions: everyone's for scope admin (or one user's with ?user=), "
                "otherwise the caller's own",
                {"200": ok(obj({"sessions": array(SESSION)}, ["sessions"])), **errors()},
                parameters=[query("user", {"type": "string"}, "only this user's sessions (admin)")],
            )
        },
        "/api/v1/sessions/{id}": {
            "delete": op(
                "endSession",
                "End a session (an admin any session, a user only their own); audited as session_end",
                {"200": OK_TRUE, "404": PROBLEM, **errors()},
                parameters=[path("id", "the session's opaque id from GET /api/v1/sessions")],
                security=WRITE_SECURITY,
            )
        },
        "/api/v1/tokens/{id}": {
            "delete": op(
                "revokeToken",
                "Revoke an API token (scope admin)",
                {"200": OK_TRUE, "404": PROBLEM, **errors()},
                parameters=[
                    path("id", "the token's id", {"type": "integer", "minimum": 1, "maximum": MAX_SEQ})
                ],
                security=WRITE_SECURITY,
            )
        },
    }
