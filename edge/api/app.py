"""Builds the aiohttp application: middlewares, then each route module's `setup(app, runtime)`."""

from __future__ import annotations

import logging
import sqlite3
import ssl
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.api import account_routes, auth, blobs, core_routes, metrics, privacy_routes, pull, tokens
from edge.api.auth import auth_middleware
from edge.api.keys import CONNECTIONS_KEY, RUNTIME_KEY
from edge.api.limits import HEADER_TIMEOUT, ConnectionStats, GatedSite, busy_middleware, connection_budget
from edge.api.problem import Problem, problem
from edge.plugins import registry
from edge.store.rows import is_disk_full

if TYPE_CHECKING:
    from edge.runtime import Runtime

log = logging.getLogger("edge.web")

#: the core's route modules, each with `setup(app, runtime)`, in order; plugins add theirs after
#: (`edge.plugins`, `routes`)
ROUTE_MODULES = [auth, tokens, core_routes, pull, metrics, account_routes, blobs, privacy_routes]
MAX_BODY = 1024 * 1024


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith("/api/"):
            # what the status needs said with it (a 405's Allow) goes along; the body is new
            kept = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
            return problem(exc.status, exc.reason or "Error", exc.text or "", kept or None)
        raise
    except sqlite3.OperationalError as exc:
        if not is_disk_full(exc):
            log.exception("unhandled error in %s %s", request.method, request.path)
            return problem(500, "Internal error", "the gateway logged the details")
        # a login's audit entry, a rule's new version, an acknowledgement: nothing was changed
        log.error("%s %s refused: the disk is full (%s)", request.method, request.path, exc)
        return problem(
            507,
            "Disk full",
            "the gateway's disk is full: nothing was changed; free space (see edge buffer stats), then retry",
            headers={"Retry-After": "60"},
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem(500, "Internal error", "the gateway logged the details")


@web.middleware
async def plain_bodies_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """A request body comes as it is: the server does not decompress bodies (a 1 MiB gzip body
    that unpacks to 1 GiB, sent without logging in, held the event loop for seconds while aiohttp
    unpacked it), and a body that says it is encoded is refused before anything reads it."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return problem(
            415,
            "Encoded body",
            f"Content-Encoding {encoding!r} is not accepted: send the request body uncompressed",
        )
    return await handler(request)  # type: ignore[no-any-return]


def build_app(runtime: Runtime) -> web.Application:
    app = web.Application(
        middlewares=[plain_bodies_middleware, busy_middleware, error_middleware, auth_middleware],
        client_max_size=MAX_BODY,
    )
    app[RUNTIME_KEY] = runtime
    app[CONNECTIONS_KEY] = ConnectionStats(total=connection_budget())
    for module in ROUTE_MODULES:
        module.setup(app, runtime)
    for plugin in registry().with_hook("routes"):
        assert plugin.routes is not None
        plugin.routes(app, runtime)
    return app


async def start_web(runtime: Runtime) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (for cleanup) and the bound port (0 in config = any free)."""
    app = build_app(runtime)
    # aiohttp's keep-alive timer runs from the connection's start and after each response until
    # the next request's headers are complete: it is the header timeout as well as the idle one
    # auto_decompress=False: bodies are never unpacked on the event loop (plain_bodies_middleware)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=2.0, keepalive_timeout=HEADER_TIMEOUT, auto_decompress=False
    )
    await runner.setup()
    cfg = runtime.site.web
    ssl_ctx = None
    if cfg.tls_cert and cfg.tls_key:
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    stats = app[CONNECTIONS_KEY]
    site = GatedSite(runner, cfg.host, cfg.port, stats, ssl_context=ssl_ctx)
    await site.start()
    port = site.port
    log.info(
        "web server listening",
        extra={
            "listen": f"{cfg.host}:{port}",
            "tls": bool(ssl_ctx),
            "max_connections": stats.total,
            "per_client": stats.per_client,
        },
    )
    return runner, port
