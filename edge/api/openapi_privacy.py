"""OpenAPI paths of the privacy routes (`edge.api.privacy_routes`): the record of processing and a
resident's export and erasure, scope admin (an admin's role for a UI session), each audited."""

from __future__ import annotations

from typing import Any

from edge.api.openapi_base import PROBLEM, WRITE_SECURITY, array, body, errors, obj, ok, op

SUBJECT = body(
    obj(
        {"subject": {"type": "string", "description": "the resident's id, user id or plate"}},
        ["subject"],
        closed=True,
    )
)
RECEIVES = {"type": "object", "additionalProperties": {"type": "object"}}
ITEM = {
    "type": "object",
    "properties": {
        "source": {"type": "string"},
        "privacy": {"enum": ["public", "personal", "sensitive"]},
        "note": {"type": "string"},
        "retention_s": {"type": ["number", "null"]},
        "encrypted_at_rest": {"type": "boolean"},
        "recipients": RECEIVES,
    },
    "required": ["source", "privacy", "retention_s", "encrypted_at_rest", "recipients"],
}
CLASS = obj(
    {
        "retention_s": {"type": ["number", "null"]},
        "encrypted_at_rest": {"type": "boolean"},
        "held": {"type": ["integer", "null"]},
    },
    ["retention_s", "encrypted_at_rest", "held"],
)


def paths() -> dict[str, Any]:
    return {
        "/api/v1/privacy/report": {
            "get": op(
                "privacyReport",
                "The record of processing: per point and event kind its class, what each sink and "
                "consumer receives of it, its retention, encryption at rest, and the records held "
                "per class, as `edge privacy report --json` (scope admin; audited)",
                {
                    "200": ok(
                        obj(
                            {
                                "site": {"type": "string"},
                                "config": {"type": "string"},
                                "journal": {"type": "string"},
                                "recipients": array({"type": "object"}),
                                "classes": {"type": "object", "additionalProperties": CLASS},
                                "held_note": {"type": "string"},
                                "points": array(ITEM),
                                "events": array(ITEM),
                            },
                            ["site", "recipients", "classes", "points", "events"],
                        )
                    ),
                    **errors(),
                },
            )
        },
        "/api/v1/privacy/subjects/export": {
            "post": op(
                "privacySubjectExport",
                "Every journal record that names a resident, sealed ones opened, as JSON lines "
                "(scope admin; audited under the resident's pseudonym; at most 50,000 records)",
                {
                    "200": {
                        "description": "One record a line, oldest first; X-Records says how many",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    "409": PROBLEM,
                    **errors(413, body=True),
                },
                request_body=SUBJECT,
                security=WRITE_SECURITY,
            )
        },
        "/api/v1/privacy/subjects/forget": {
            "post": op(
                "privacySubjectForget",
                "Delete a resident's data key: their sealed records stop opening everywhere, "
                "records naming them outside their key are counted and left to retention, a subject_erased "
                "notice is journaled (scope admin; audited)",
                {
                    "200": ok(
                        obj(
                            {
                                "subject": {"type": "string"},
                                "had_key": {"type": "boolean"},
                                "kept_in_clear": {"type": "integer"},
                                "recipients": {"type": "integer"},
                            },
                            ["subject", "had_key", "kept_in_clear", "recipients"],
                        )
                    ),
                    "409": PROBLEM,
                    **errors(body=True),
                },
                request_body=SUBJECT,
                security=WRITE_SECURITY,
            )
        },
    }
