"""No routes: the status routes of a feature are added by its plugin's `routes` hook.

Kept, empty, only while `edge.api.pull.setup` still calls `setup` here."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from edge.runtime import Runtime


def setup(app: web.Application, runtime: Runtime) -> None:
    """Adds nothing."""
