"""OpenAPI path of the commissioning test-read (`POST /api/v1/commission/read`): a point read now,
or a raw Modbus register range decoded in every word order (`drivers.modbus.probe`).

Declared by the Modbus plugin's `openapi` hook beside its `routes` hook (`drivers.modbus.commission`);
the tables, data types and per-request limits are the handler's own, so the document bounds a raw
read the way the handler does."""

from __future__ import annotations

from typing import Any

from edge.api.openapi_base import (
    PROBLEM,
    QUALITY,
    VALUE,
    WRITE_SECURITY,
    array,
    body,
    errors,
    obj,
    ok,
    op,
    path,
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
    """The body of a raw register read, bounded by the handler's own tables, types and limits."""
    from drivers.modbus.commission import DATA_TYPES, TABLES
    from drivers.modbus.config import MAX_BITS, MAX_REGISTERS

    return obj(
        {
            "device": {"type": "string"},
            "table": {"enum": list(TABLES)},
            "address": {
                "oneOf": [
                    {"type": "integer", "minimum": 0, "maximum": 65535},
                    {"type": "string", "description": "decimal or 0x hex, as datasheets write it: 0x2006"},
                ]
            },
            "count": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_BITS,
                "description": f"at most {MAX_REGISTERS} for holding and input",
            },
            "type": {"enum": list(DATA_TYPES)},
        },
        ["device"],
    )


REGISTER = obj(
    {
        "point": {"type": "string"},
        "name": {"type": "string"},
        "table": {"type": "string"},
        "address": {"type": "integer"},
        "count": {"type": "integer", "description": "registers (or bits) the point occupies"},
        "type": {"type": "string", "description": "the register data type (float32, uint16, ...)"},
        "order": {"type": ["string", "null"], "description": "word order of a multi-register value"},
        "bit": {"type": ["integer", "null"]},
        "scale": {"type": "number"},
        "offset": {"type": "number"},
        "writable": {"type": "boolean"},
    },
    ["point", "table", "address", "type"],
)


def paths() -> dict[str, Any]:
    return {
        "/api/v1/commission/registers/{id}": {
            "get": op(
                "commissionRegisters",
                "A Modbus device's register map: each point's table, address, type, word order (scope read)",
                {
                    "200": ok(
                        obj(
                            {
                                "device": {"type": "string"},
                                "unit": {"type": "integer"},
                                "profile": {"type": ["string", "null"]},
                                "points": array(REGISTER),
                            },
                            ["device", "points"],
                        )
                    ),
                    "404": PROBLEM,
                    **errors(),
                },
                parameters=[path("id", "the device id")],
            )
        },
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
        },
    }
