"""OpenAPI path of the blob API (`edge.api.blobs`): camera snapshots as JPEG."""

from __future__ import annotations

from typing import Any

from edge.api.openapi_base import PROBLEM, errors, op, path


def paths() -> dict[str, Any]:
    return {
        "/api/v1/blobs/{id}": {
            "get": op(
                "getBlob",
                "A stored camera snapshot (personal data: technician, admin, an API token with the read and admin "
                "scopes, or a consumer allowed personal; "
                "a sensitive camera's, sealed at rest: admin, or a consumer allowed sensitive)",
                {
                    "200": {
                        "description": "The JPEG, redacted unless the camera has redact: false",
                        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "404": PROBLEM,
                    "410": PROBLEM,  # erased: the data key of the resident it shows was deleted
                    "500": PROBLEM,  # a sealed file that does not open (altered or moved)
                    "503": PROBLEM,  # sealed, and the gateway holds no key to open it
                    **errors(),
                },
                parameters=[path("id", "the blob id: the sha256 of the image (64 lowercase hex digits)")],
            )
        }
    }
