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
    query,
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
#: a staff account's (or token's) name: personal, as an alert acknowledger's is
STAFF_NAME_SAID = (
    "who made the change: a staff account's or token's name, personal data; null to a caller below "
    "the personal class (a viewer, a token without admin) unless it is their own; `system` (a pack "
    "read at start) and `cli` (edge rules import) name the gateway and are shown to all"
)
STAFF_NAME = {"type": ["string", "null"], "description": STAFF_NAME_SAID}
DESCRIBED = obj(
    {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "enabled": {"type": "boolean"},
        "state": {"type": "string"},
        "last_fired": {"type": ["number", "null"]},
        "error": {
            "type": ["string", "null"],
            "description": "why the rule failed; it may quote what it read (a plate): null above the "
            "caller's privacy class, else audited as a read at its class",
        },
        "version": {"type": "integer"},
        "updated": {"type": "number"},
        "updated_by": STAFF_NAME,
        "redacted": {
            "type": "boolean",
            "description": "its state, last firing or error withheld: above the caller's privacy class",
        },
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
#: a rule's answer carries its version as its ETag; a change sends it back to be made against it
ETAG = {
    "ETag": {
        "description": 'the rule\'s version, quoted ("7"): send it as If-Match with a change of the rule',
        "schema": {"type": "string"},
    }
}


def if_match(description: str, pattern: str) -> dict[str, Any]:
    """The optional If-Match header of a change made against what its caller read."""
    return {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


def conflict(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The 409 of a change whose If-Match no longer holds: a problem with what holds now."""
    return {"409": {"description": description, "content": {"application/problem+json": {"schema": schema}}}}


IF_MATCH = if_match(
    'the version the change was made against, as the ETag a GET answered with ("7"): the change is '
    "made only if the rule is still at that version, else 409 with its `current_version` (null when "
    "it was deleted) and, to a caller with scope read, the rule as it is now (`updated_by`, "
    "`updated`, `enabled`, `text`), and nothing changes. Without If-Match the change replaces "
    "whatever is stored",
    '^"?[1-9][0-9]{0,17}"?$',
)
#: what a 409 shows of the rule as it is now only to a caller with scope read (null: deleted)
SHOWN_TO_READERS = "only to a caller with scope read; null when the rule was deleted"
CONFLICT = conflict(
    "The rule is no longer at the version If-Match named: nothing changed. The rule as it is now "
    "(`updated_by`, `updated`, `enabled`, `text`) is sent only to a caller with scope read",
    obj(
        {
            "rule": {"type": "string"},
            "your_version": {"type": "integer"},
            "current_version": {"type": ["integer", "null"], "description": "null: deleted since"},
            "updated_by": {
                "type": ["string", "null"],
                "description": SHOWN_TO_READERS + "; a staff name, null below the personal class",
            },
            "updated": {"type": ["number", "null"], "description": SHOWN_TO_READERS},
            "enabled": {"type": ["boolean", "null"], "description": SHOWN_TO_READERS},
            "text": {"type": ["string", "null"], "description": SHOWN_TO_READERS},
        },
        ["rule", "your_version", "current_version"],
    ),
)


def versioned(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    """A 200 answer of one rule, with its version as the ETag."""
    return {**ok(schema, description), "headers": ETAG}


#: the answer of an update, enable, disable or restore: the rule as stored, whose text came from the
#: store (an update as JSON keeps the stored text's comments) (`rules.api.UNREAD_SHOWN`)
CHANGED = versioned(
    DESCRIBED,
    "The rule as stored. To a caller without scope read, only that it changed: `id`, `enabled`, "
    "`state`, `version`, `updated`, `updated_by` and an update's `warnings` (not its `name`, `rule` "
    "or `text`)",
)


#: what an import asked with `?dry_run=1` would do to each rule, storing nothing
IMPORT_CHANGES = obj(
    {
        "dry_run": {"const": True},
        "etag": {
            "type": "string",
            "description": "the stored versions of the pack's rules (also the ETag header): send it "
            "quoted as If-Match with the import to store the pack only if none of them changed since",
        },
        "changes": array(
            obj(
                {
                    "id": {"type": "string"},
                    "change": {
                        "enum": ["new", "replaced", "unchanged"],
                        "description": "to a caller without scope read, new or replaced (the import "
                        "stores a new version): whether the stored document is the pack's is not said",
                    },
                    "version": {"type": ["integer", "null"], "description": "the stored version; null: new"},
                    "enabled_before": {"type": "boolean", "description": "only to a caller with scope read"},
                    "enabled_after": {"type": "boolean"},
                    "updated": {"type": "number", "description": "only to a caller with scope read"},
                    "updated_by": {
                        **STAFF_NAME,
                        "description": "only to a caller with scope read; " + STAFF_NAME_SAID,
                    },
                    "action": {
                        "type": "string",
                        "description": "how the stored version came: import, update, disable, ...; "
                        "only to a caller with scope read",
                    },
                },
                ["id", "change", "version", "enabled_after"],
            )
        ),
    },
    ["dry_run", "changes", "etag"],
)
PACK_IF_MATCH = if_match(
    "the `etag` a dry run of this import answered with: the pack is stored only if none of its rules "
    "was saved, imported or deleted since, else 409 with `changes` and `etag` as they are now and "
    "nothing imported. Without If-Match the import replaces whatever is stored",
    '^"?[0-9a-f]{32}"?$',
)
PACK_MOVED = conflict(
    "A rule of the pack changed since the dry run If-Match names: nothing imported",
    obj(
        {"changes": IMPORT_CHANGES["properties"]["changes"], "etag": {"type": "string"}}, ["changes", "etag"]
    ),
)


def paths() -> dict[str, Any]:
    toggle = {
        name: {
            "post": op(
                f"{name}Rule",
                f"{name.capitalize()} a rule (a new version; scope rules)",
                {"200": CHANGED, "404": PROBLEM, **CONFLICT, **INVALID, **errors()},
                parameters=[RULE_ID, IF_MATCH],
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
                "Import a YAML rule pack: all rules or none (scope rules); with dry_run, what it "
                "would do to each rule, storing nothing",
                {
                    "200": ok(
                        {
                            "oneOf": [
                                obj({"imported": array({"type": "string"})}, ["imported"]),
                                IMPORT_CHANGES,
                            ]
                        }
                    ),
                    "413": PROBLEM,
                    **PACK_MOVED,
                    **INVALID,
                    **errors(),
                },
                parameters=[
                    PACK_IF_MATCH,
                    query(
                        "dry_run",
                        {"enum": ["1", "true", "yes", "0", "false", "no"]},
                        "1: check the pack as the import would and store nothing; answer what it would do "
                        "to each rule (new, replaced or unchanged, enabled before and after)",
                    ),
                ],
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
                                "description": "a stored rule, when `rule` is not given; needs scope "
                                "read too (403 without it)",
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
                "One rule with its state (scope read); its version is its ETag",
                {"200": versioned(DESCRIBED), "404": PROBLEM, "503": PROBLEM, **errors()},
                parameters=[RULE_ID],
            ),
            "put": op(
                "updateRule",
                "Replace a rule (a new version; scope rules); the body's id, if any, must match. "
                "With If-Match, only if the rule is still at that version (else 409)",
                {"200": CHANGED, **CONFLICT, **INVALID, **errors(body=True)},
                parameters=[RULE_ID, IF_MATCH],
                request_body=rule_body(),
                security=WRITE_SECURITY,
            ),
            "delete": op(
                "deleteRule",
                "Delete a rule; its history stays (scope rules); with If-Match, only that version",
                {"204": {"description": "Deleted"}, "404": PROBLEM, **CONFLICT, "503": PROBLEM, **errors()},
                parameters=[RULE_ID, IF_MATCH],
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
                                            "actor": STAFF_NAME,
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
                "Make an old version current again (a new version; scope rules); with If-Match, only "
                "if the rule is still at that version",
                {"200": CHANGED, "404": PROBLEM, **CONFLICT, **INVALID, **errors()},
                parameters=[
                    RULE_ID,
                    IF_MATCH,
                    path(
                        "v", "the version number", {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}
                    ),
                ],
                security=WRITE_SECURITY,
            )
        },
    }
