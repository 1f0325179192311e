"""OpenAPI paths of the KPI API (`edge.kpi.api`), declared by the plugin's `openapi` hook."""

from __future__ import annotations

from typing import Any

from edge.api.openapi_base import PROBLEM, array, errors, obj, op, query

SHARE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
DAY = {"type": "string", "format": "date"}
DEVICE = obj(
    {
        "id": {"type": "string"},
        "availability": SHARE,
        "completeness": SHARE,
        "observed_s": {"type": "number"},
        "online_s": {"type": "number"},
        "targets": obj({"availability": SHARE, "completeness": SHARE}),
        "below_target": array({"enum": ["availability", "completeness"]}),
        "points": {
            "type": "object",
            "additionalProperties": obj({"method": {"type": ["string", "null"]}, "completeness": SHARE}),
        },
    },
    ["id", "availability", "completeness", "below_target"],
)
DAY_FIGURES = obj(
    {
        "day": DAY,
        "closed": {"type": "boolean"},
        "site": obj(
            {
                "availability": SHARE,
                "completeness": SHARE,
                "devices": {"type": "integer"},
                "below_target": {"type": "integer"},
            }
        ),
        "gateway": obj(
            {
                "observed_s": {"type": "number"},
                "down_s": {"type": "number"},
                "availability": SHARE,
                "starts": {"type": "integer"},
                "stops": {"type": "integer"},
            }
        ),
        "records": {"type": "integer"},
        "alerts": obj(
            {
                "count": {"type": "integer"},
                "by_severity": {"type": "object", "additionalProperties": {"type": "integer"}},
                "ack_mean_s": {"type": ["number", "null"]},
                "ack_p90_s": {"type": ["number", "null"]},
                "clear_mean_s": {"type": ["number", "null"]},
                "clear_p90_s": {"type": ["number", "null"]},
                "not_acked_within_target": {"type": "object", "additionalProperties": {"type": "integer"}},
                "awaiting_ack": {"type": "integer"},
            }
        ),
        "rule_actions": obj({"executed": {"type": "integer"}, "failed": {"type": "integer"}}),
        "delivery": {
            "type": "object",
            "additionalProperties": obj(
                {
                    "kind": {"enum": ["sink", "consumer"]},
                    "delivered_share": SHARE,
                    "delay_p50_s": {"type": ["number", "null"]},
                    "delay_p95_s": {"type": ["number", "null"]},
                }
            ),
        },
        "devices": array(DEVICE),
        "below_target": array(
            obj(
                {
                    "device": {"type": "string"},
                    "figure": {"type": "string"},
                    "value": {"type": "number"},
                    "target": {"type": "number"},
                }
            )
        ),
    },
    ["day", "closed", "site", "gateway", "alerts", "rule_actions", "delivery", "devices"],
)
REPORT = obj(
    {
        "timezone": {"type": "string"},
        "from": DAY,
        "to": DAY,
        "today": DAY,
        "days": array(DAY_FIGURES),
        "availability_matrix": obj(
            {"days": array(DAY), "devices": {"type": "object", "additionalProperties": array(SHARE)}}
        ),
    },
    ["timezone", "from", "to", "today", "days", "availability_matrix"],
)


def paths() -> dict[str, Any]:
    return {
        "/api/v1/kpi": {
            "get": op(
                "kpi",
                "Operator KPIs per day in the site's timezone (scope read); today so far included",
                {
                    "200": {
                        "description": "The figures (docs/kpi.md defines each)",
                        "content": {
                            "application/json": {"schema": REPORT},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    "404": PROBLEM,
                    **errors(),
                },
                parameters=[
                    query("from", DAY, "first day, YYYY-MM-DD (default: 6 days before today)"),
                    query("to", DAY, "last day, YYYY-MM-DD (default: today); at most 400 days"),
                    query("device", {"type": "string"}, "only this device in the per-device figures"),
                    query("format", {"enum": ["json", "csv"]}, "csv: one row per day and device"),
                ],
            )
        }
    }
