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
    sealed): readings are then held in memory or dropped and counted, not journaled.

    200 {"status": "degraded", "reason": ..., "retention_failing": ...} while the journal's
    retention steps fail (a damaged page): records are still journaled, but those past their
    retention are kept, so the journal grows toward its cap until it is repaired or restored."""
    runtime = keys.get_runtime(request)
    journal = runtime.journal
    problem = journal.writer_problem
    running = runtime.ready.is_set() and not runtime.stopping.is_set()
    body = {
        "status": "ok" if running else "degraded",
        "site": runtime.site.site.id,
        "committed_seq": journal.committed_seq,
    }
    if problem is not None:
        body["status"] = "failing"
        body["reason"] = problem
    else:
        retention = journal.retention_problem
        if retention is not None:
            body["retention_failing"] = retention
            if running:  # a start or a stop is degraded already, and says no reason
                body["status"] = "degraded"
                body["reason"] = retention
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
