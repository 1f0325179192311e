"""What a route handler reads from the app: the runtime it serves and the server's connection
counters. Kept apart from `edge.api.app` (which imports every route module) so a route module
never imports the app that imports it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.api.limits import ConnectionStats

if TYPE_CHECKING:
    from edge.runtime import Runtime

RUNTIME_KEY: web.AppKey[Any] = web.AppKey("runtime", object)
#: the connection counters and caps of the server that serves this app (`edge.api.limits`)
CONNECTIONS_KEY: web.AppKey[ConnectionStats] = web.AppKey("connections", ConnectionStats)


def get_runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME_KEY]  # type: ignore[no-any-return]
