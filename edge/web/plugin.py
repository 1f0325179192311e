"""The web UI's manifest: the technician's pages and the API they use (/api/ui/...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.plugins import Plugin

if TYPE_CHECKING:
    from aiohttp import web

    from edge.runtime import Runtime


def routes(app: web.Application, runtime: Runtime) -> None:
    from edge.web import ui

    ui.setup(app, runtime)


PLUGIN = Plugin(name="web-ui", routes=routes, order=90)
