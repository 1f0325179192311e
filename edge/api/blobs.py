"""`GET /api/v1/blobs/{id}`: a stored snapshot, for callers allowed to see its class.

Snapshots are personal data (PIPL): a local user needs a role that sees `personal` (technician,
admin), an API token the `read` and `admin` scopes (reading is the `read` scope on every route;
`admin` lifts its class above `public`), a pull consumer a `max_privacy` of `personal` or above
(one the site file does not declare has `public`: `tokens.UNDECLARED_CLASS`). A sensitive
camera's snapshots are sealed on disk (`edge.store.blobs`): they are opened here only for callers
allowed `sensitive` (admin; a consumer whose `max_privacy` is `sensitive`). On a site with a
master key a personal camera's snapshots are sealed too: opened here for the callers allowed
`personal`, as plain ones. A sealed image is never cached by the browser. The id is the blob's
sha256; anything else is refused before the file system is touched. Every image served is
written to the audit log (who, which snapshot, its class and count as a read; the action stays
`view_snapshot`, the one entry of the response).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from edge import audit
from edge.api import keys, privacy, tokens
from edge.api.auth import Principal, require
from edge.api.problem import Problem
from edge.model import PRIVACY_RANK, Privacy
from edge.store.blobs import SUFFIX, BlobSealError, BlobStore, is_sensitive, valid_blob_id

if TYPE_CHECKING:
    from pathlib import Path

    from edge.runtime import Runtime

BLOBS_KEY: web.AppKey[BlobStore] = web.AppKey("blobs", BlobStore)


def may_see(runtime: Runtime, principal: Principal, cls: Privacy) -> bool:
    """The caller may receive data of class `cls` (the limits the rest of the API applies)."""
    if "read" in principal.scopes:  # a local user or an API token: the class of its role/scopes
        return privacy.limit_for(principal) >= PRIVACY_RANK[cls]
    if principal.consumer:  # a pull consumer: its class from the site file (undeclared: public)
        limit = next((c.max_privacy for c in runtime.site.consumers if c.id == principal.consumer), None)
        return PRIVACY_RANK[limit or Privacy(tokens.UNDECLARED_CLASS)] >= PRIVACY_RANK[cls]
    return False


def _read(store: BlobStore, path: Path, blob_id: str) -> bytes:
    """The image, opened when sealed; Problems for what the caller is told instead."""
    try:
        return store.open(path)
    except FileNotFoundError:  # deleted by retention between find and read
        raise Problem(404, "No such blob", f"no snapshot {blob_id}") from None
    except LookupError:  # the key of the resident it shows was deleted: erased
        raise Problem(410, "Erased", f"snapshot {blob_id} was erased with its subject's data key") from None
    except BlobSealError:
        raise Problem(
            503, "Sealed", f"snapshot {blob_id} is sealed and the gateway holds no key to open it"
        ) from None
    except ValueError:
        raise Problem(
            500, "Sealed snapshot does not open", f"snapshot {blob_id} was altered or moved"
        ) from None


TOKEN_SCOPES = "an API token needs the read and admin scopes"


def _refusal(principal: Principal) -> str:
    """Why a caller may not see snapshots, saying what it would need."""
    if principal.kind == "token":
        held = ", ".join(sorted(principal.scopes)) or "none"
        return f"snapshots are personal data: {TOKEN_SCOPES} (this one has: {held})"
    return "snapshots are personal data: this needs a technician or admin"


async def get_blob(request: web.Request) -> web.Response:
    principal = require(request)
    if not principal.scopes & {"read", "pull"}:
        raise Problem(403, "Forbidden", _refusal(principal))
    runtime = keys.get_runtime(request)
    if not may_see(runtime, principal, Privacy.PERSONAL):
        raise Problem(403, "Forbidden", _refusal(principal))
    blob_id = request.match_info["id"]
    if not valid_blob_id(blob_id):
        raise Problem(
            400, "Malformed blob id", "a blob id is the sha256 of the image: 64 lowercase hex digits"
        )
    store = request.app[BLOBS_KEY]
    path = await asyncio.to_thread(store.find, blob_id)
    if path is None:
        raise Problem(404, "No such blob", f"no snapshot {blob_id} (it may have been deleted by retention)")
    sealed = not path.name.endswith(SUFFIX)
    cls = Privacy.SENSITIVE if is_sensitive(path.name) else Privacy.PERSONAL
    if not may_see(runtime, principal, cls):
        raise Problem(
            403,
            "Forbidden",
            "this snapshot is sensitive data: this needs an admin"
            + (f" ({TOKEN_SCOPES})" if principal.kind == "token" else ""),
        )
    data = await asyncio.to_thread(_read, store, path, blob_id)
    if runtime.state is not None:  # who looked at which personal image, like every write
        detail = {"kind": principal.kind, "route": privacy.route_of(request.method, request.path)}
        if principal.consumer:
            detail["consumer"] = principal.consumer
        await asyncio.to_thread(
            audit.record,
            runtime.state,
            principal.name,
            "view_snapshot",
            blob_id,
            classes={str(cls): 1},
            **detail,
        )
    return web.Response(
        body=data,
        content_type="image/jpeg",
        headers={
            # a sealed image is not left in clear in the browser's disk cache
            "Cache-Control": "no-store" if sealed else "private, max-age=86400, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )


def setup(app: web.Application, runtime: Runtime) -> None:
    app[BLOBS_KEY] = BlobStore(runtime.site.storage.resolved_blob_dir())
    app.router.add_get("/api/v1/blobs/{id}", get_blob)
