"""Core routes: `/healthz` (public) and the runtime's status and device APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from edge.api import keys
from edge.api.auth import require
from edge.api.problem import json_response

if TYPE_CHECKING:
    from edge.runtime import Runtime


async def healthz(request: web.Request) -> web.Response:
    """200 {"status": "ok"} while the gateway runs and journals what it reads; 503 while it starts
    or stops, and 503 {"status": "failing", "reason": ...} while the journal cannot commit (its
    writer thread ended, or its commits fail: disk full, I/O error, a record that cannot be
    sealed): readings are then held in memory or dropped and counted, not journaled."""
    runtime = keys.get_runtime(request)
    journal = runtime.journal
    problem = journal.writer_problem
    body = {
        "status": "ok" if runtime.ready.is_set() and not runtime.stopping.is_set() else "degraded",
        "site": runtime.site.site.id,
        "committed_seq": journal.committed_seq,
    }
    if problem is not None:
        body["status"] = "failing"
        body["reason"] = problem
    return json_response(body, status=200 if runtime.ready.is_set() and problem is None else 503)


async def status(request: web.Request) -> web.Response:
    require(request, "read")
    return json_response(keys.get_runtime(request).status())


async def devices(request: web.Request) -> web.Response:
    require(request, "read")
    return json_response({"devices": keys.get_runtime(request).devices_status()})


ROUTES = [
    web.get("/healthz", healthz),
    web.get("/api/v1/status", status),
    web.get("/api/v1/devices", devices),
]


def setup(app: web.Application, runtime: Runtime) -> None:
    app.router.add_routes(ROUTES)
