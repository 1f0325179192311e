"""OpenAPI paths of the rules API (`rules.api`): CRUD, enable/disable, validate, dry-run,
versions and restore, YAML pack import/export. Reading needs scope read, changing scope rules.

Declared by the rules plugin's `openapi` hook, so the document describes these routes exactly
when the plugin serves them."""

from __future__ import annotations

from typing import Any

from edge.api.openapi_base import (
    PROBLEM,
    WRITE_SECURITY,
    array,
    body,
    errors,
    obj,
    ok,
    op,
    path,
)

BASE = "/api/v1/rules"
MAX_DRY_RUN_HOURS = 24 * 31
MAX_VERSION = 2**62

#: the rule document (rules.model.Rule); the engine validates it fully and answers 422 with
#: located errors, so the schema here names the fields rather than repeating every check
RULE = {
    "type": "object",
    "required": ["id", "when"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "enabled": {"type": "boolean"},
        "when": array({"type": "object"}),
        "if": {"type": "string"},
        "for": {"type": ["string", "number"]},
        "clear_if": {"type": "string"},
        "notify": {"enum": ["once", "toggle", "repeat", "always"]},
        "every": {"type": ["string", "number"]},
        "severity": {"type": "string"},
        "max_actions_per_minute": {"type": "integer", "minimum": 1, "maximum": 10000},
        "then": array({"type": "object"}),
        "else": array({"type": "object"}),
    },
}
#: what an enabled rule names that the site does not have (a point no trigger pattern matches, a
#: p() of no point, a write to a point that is not writable): said, located as errors are, when the
#: rule is validated, created or updated; never refused
WARNINGS = array(
    obj(
        {
            "rule": {"type": "string"},
            "field": {"type": "string"},
            "line": {"type": "integer"},
            "column": {"type": "integer"},
            "message": {"type": "string"},
        },
        ["field", "message"],
    )
)
DESCRIBED = obj(
    {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "enabled": {"type": "boolean"},
        "state": {"type": "string"},
        "last_fired": {"type": ["number", "null"]},
        "error": {"type": ["string", "null"]},
        "version": {"type": "integer"},
        "updated": {"type": "number"},
        "updated_by": {"type": "string"},
        "rule": RULE,
        # the YAML the editor shows: as its author wrote it (a pack, the editor), or the
        # document written out in its fields' order for a rule that came as JSON
        "text": {"type": "string"},
        "warnings": WARNINGS,  # in the answer to a create or update only
    },
    ["id", "enabled", "state", "version"],
)


def rule_body() -> dict[str, Any]:
    """A rule as JSON, or as its YAML text (the editor's), which the rule then keeps."""
    out = body(RULE)
    out["content"]["application/yaml"] = {"schema": {"type": "string", "maxLength": 64 * 1024}}
    return out


INVALID = {"422": PROBLEM, "503": PROBLEM}
RULE_ID = path("id", "the rule id")


def paths() -> dict[str, Any]:
    toggle = {
        name: {
            "post": op(
                f"{name}Rule",
                f"{name.capitalize()} a rule (a new version; scope rules)",
                {"200": ok(DESCRIBED), "404": PROBLEM, **INVALID, **errors()},
                parameters=[RULE_ID],
                security=WRITE_SECURITY,
            )
        }
        for name in ("enable", "disable")
    }
    return {
        BASE: {
            "get": op(
                "rules",
                "Every rule with its state (scope read)",
                {"200": ok(obj({"rules": array(DESCRIBED)}, ["rules"])), "503": PROBLEM, **errors()},
            ),
            "post": op(
                "createRule",
                "Create a rule (scope rules); 409 when the id exists",
                {"201": ok(DESCRIBED), "409": PROBLEM, **INVALID, **errors(body=True)},
                request_body=rule_body(),
                security=WRITE_SECURITY,
            ),
        },
        f"{BASE}/export": {
            "get": op(
                "exportRules",
                "Every rule as a YAML rule pack (scope read)",
                {
                    "200": {
                        "description": "A rule pack",
                        "content": {
                            "application/yaml": {
                                "schema": obj({"rules": array({"type": "object"})}, ["rules"])
                            }
                        },
                    },
                    "503": PROBLEM,
                    **errors(),
                },
            )
        },
        f"{BASE}/import": {
            "post": op(
                "importRules",
                "Import a YAML rule pack: all rules or none (scope rules)",
                {
                    "200": ok(obj({"imported": array({"type": "string"})}, ["imported"])),
                    "413": PROBLEM,
                    **INVALID,
                    **errors(),
                },
                request_body=body({"type": "string"}, "application/yaml", "a rule pack, UTF-8, up to 1 MiB"),
                security=WRITE_SECURITY,
            )
        },
        f"{BASE}/validate": {
            "post": op(
                "validateRule",
                "Check a rule without storing it (scope rules)",
                {
                    "200": ok(obj({"ok": {"const": True}, "warnings": WARNINGS}, ["ok"])),
                    "422": PROBLEM,
                    **errors(body=True),
                },
                request_body=body(RULE),
                security=WRITE_SECURITY,
            )
        },
        f"{BASE}/dry-run": {
            "post": op(
                "dryRunRule",
                "Replay the last hours of the journal through a rule (new or stored) without acting "
                "(scope rules); a firing above the caller's privacy class comes back redacted. It runs in "
                "a worker process with a time and memory budget: 422 with `limit` past a budget or an "
                "expression limit, 429 with Retry-After while two run, 503 when the process died",
                {
                    "200": ok(
                        obj(
                            {
                                "firings": array(
                                    obj(
                                        {
                                            "ts": {"type": "number"},
                                            "kind": {
                                                "type": "string",
                                                "description": "fired, cleared or error",
                                            },
                                            "message": {"type": ["string", "null"]},
                                            "key": {"type": ["string", "null"]},
                                            "point": {"type": ["string", "null"]},
                                            "privacy": {
                                                "type": "string",
                                                "enum": ["public", "personal", "sensitive"],
                                            },
                                            "redacted": {
                                                "type": "boolean",
                                                "description": "message, key and point withheld: the firing is "
                                                "above the caller's privacy class",
                                            },
                                        },
                                        ["ts", "kind"],
                                    )
                                ),
                                "evaluated": {"type": "integer"},
                                "prefill": {
                                    "type": ["object", "null"],
                                    "description": "windows filled from readings before the range "
                                    "(windows, rows, samples, truncated, ms); null when the refill is off",
                                },
                            }
                        )
                    ),
                    "404": PROBLEM,
                    "429": PROBLEM,
                    "503": PROBLEM,
                    **INVALID,
                    **errors(body=True),
                },
                request_body=body(
                    obj(
                        {
                            "rule": RULE,
                            "id": {
                                "type": "string",
                                "description": "a stored rule, when `rule` is not given",
                            },
                            "hours": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DRY_RUN_HOURS},
                        }
                    )
                ),
                security=WRITE_SECURITY,
            )
        },
        BASE + "/{id}": {
            "get": op(
                "getRule",
                "One rule with its state (scope read)",
                {"200": ok(DESCRIBED), "404": PROBLEM, "503": PROBLEM, **errors()},
                parameters=[RULE_ID],
            ),
            "put": op(
                "updateRule",
                "Replace a rule (a new version; scope rules); the body's id, if any, must match",
                {"200": ok(DESCRIBED), **INVALID, **errors(body=True)},
                parameters=[RULE_ID],
                request_body=rule_body(),
                security=WRITE_SECURITY,
            ),
            "delete": op(
                "deleteRule",
                "Delete a rule; its history stays (scope rules)",
                {"204": {"description": "Deleted"}, "404": PROBLEM, "503": PROBLEM, **errors()},
                parameters=[RULE_ID],
                security=WRITE_SECURITY,
            ),
        },
        BASE + "/{id}/enable": toggle["enable"],
        BASE + "/{id}/disable": toggle["disable"],
        BASE + "/{id}/versions": {
            "get": op(
                "ruleVersions",
                "A rule's version history, newest first (scope read)",
                {
                    "200": ok(
                        obj(
                            {
                                "versions": array(
                                    obj(
                                        {
                                            "version": {"type": "integer"},
                                            "ts": {"type": "number"},
                                            "actor": {"type": "string"},
                                            "action": {"type": "string"},
                                            "state": {
                                                "type": "string",
                                                "description": "new, kept (only presentation or actions "
                                                "changed) or reset; empty for versions saved before this was recorded",
                                            },
                                            "rule": {"type": "object"},
                                        },
                                        ["version", "rule"],
                                    )
                                )
                            },
                            ["versions"],
                        )
                    ),
                    "404": PROBLEM,
                    "503": PROBLEM,
                    **errors(),
                },
                parameters=[RULE_ID],
            )
        },
        BASE + "/{id}/versions/{v}/restore": {
            "post": op(
                "restoreRule",
                "Make an old version current again (a new version; scope rules)",
                {"200": ok(DESCRIBED), "404": PROBLEM, **INVALID, **errors()},
                parameters=[
                    RULE_ID,
                    path(
                        "v", "the version number", {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}
                    ),
                ],
                security=WRITE_SECURITY,
            )
        },
    }
