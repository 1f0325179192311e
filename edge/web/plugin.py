"""The web UI's manifest: the technician's pages and the API they use (/api/ui/...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin, lazy_value

if TYPE_CHECKING:
    from aiohttp import web

    from edge.runtime import Runtime


def routes(app: web.Application, runtime: Runtime) -> None:
    from edge.web import ui

    ui.setup(app, runtime)


def openapi() -> Mapping[str, Any]:
    from edge.web import openapi

    return openapi.paths()


PLUGIN = Plugin(
    name="web-ui",
    routes=routes,
    openapi=openapi,
    state_schemas={"ui": lazy_value("edge.web.ui_api:ACK_MIGRATIONS")},
    order=90,
)
