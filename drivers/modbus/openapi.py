"""OpenAPI path of the commissioning test-read (`POST /api/v1/commission/read`): a point read now,
or a raw Modbus register range decoded in every word order (`drivers.modbus.probe`).

The tables, data types and per-request limits come from the Modbus package itself, so the
document bounds a raw read the way the handler does."""

from __future__ import annotations

from typing import Any, get_args

from edge.api.openapi_base import (
    PROBLEM,
    QUALITY,
    VALUE,
    WRITE_SECURITY,
    body,
    errors,
    obj,
    op,
)

READ_ANSWER = {
    "description": "A point's value ({point}) or a raw register range decoded in every word order "
    "({device, ...}, from drivers.modbus.probe)",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "point": {"type": "string"},
                    "value": VALUE,
                    "quality": QUALITY,
                    "ts": {"type": "number"},
                    "age_s": {"type": "number"},
                    "source": {
                        "enum": ["device", "last_poll"],
                        "description": "device: read from the device just now; last_poll: the driver's latest value",
                    },
                    "duration_ms": {
                        "type": ["number", "null"],
                        "description": "of the read, when source is device",
                    },
                    "redacted": {
                        "type": "string",
                        "description": "the point's privacy class, when the caller's role may not see its value",
                    },
                },
            }
        }
    },
}


def raw_read() -> dict[str, Any]:
    """The body of a raw register read: register tables first, then the bit tables."""
    from drivers.modbus.codec import NUMERIC_TYPES
    from drivers.modbus.config import BIT_TABLES, MAX_BITS, MAX_REGISTERS, Table

    tables = [t for t in get_args(Table) if t not in BIT_TABLES] + list(BIT_TABLES)
    return obj(
        {
            "device": {"type": "string"},
            "table": {"enum": tables},
            "address": {"type": "integer", "minimum": 0, "maximum": 65535},
            "count": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_BITS,
                "description": f"at most {MAX_REGISTERS} for holding and input",
            },
            "type": {"enum": [*NUMERIC_TYPES, "string"]},
        },
        ["device"],
    )


def paths() -> dict[str, Any]:
    return {
        "/api/v1/commission/read": {
            "post": op(
                "commissionRead",
                "Technician's test-read: a point now, or a raw Modbus register range (scope write)",
                {
                    "200": READ_ANSWER,
                    "404": PROBLEM,
                    "422": PROBLEM,
                    "501": PROBLEM,
                    "502": PROBLEM,
                    "504": PROBLEM,
                    **errors(body=True),
                },
                request_body=body({"oneOf": [obj({"point": {"type": "string"}}, ["point"]), raw_read()]}),
                security=WRITE_SECURITY,
            )
        }
    }
