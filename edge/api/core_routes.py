"""Core routes: `/healthz` (public) and the runtime's status and device APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from edge.api.auth import require
from edge.api.problem import json_response

if TYPE_CHECKING:
    from edge.runtime import Runtime


def setup(app: web.Application, runtime: Runtime) -> None:
    async def healthz(request: web.Request) -> web.Response:
        ok = runtime.ready.is_set() and not runtime.stopping.is_set() and not runtime.journal.failing
        body = {
            "status": "ok" if ok else "degraded",
            "site": runtime.site.site.id,
            "committed_seq": runtime.journal.committed_seq,
        }
        return json_response(body, status=200 if runtime.ready.is_set() else 503)

    async def status(request: web.Request) -> web.Response:
        require(request, "read")
        return json_response(runtime.status())

    async def devices(request: web.Request) -> web.Response:
        require(request, "read")
        return json_response({"devices": runtime.devices_status()})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/devices", devices)
