"""The operator KPIs' manifest: the `kpi:` section, the component that folds the journal into
daily figures, `GET /api/v1/kpi` (JSON and CSV) and `edge kpi show|rebuild|export`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin

if TYPE_CHECKING:
    import argparse

    from aiohttp import web
    from pydantic import BaseModel

    from edge.config import Site
    from edge.plugins import ComponentContext
    from edge.runtime import Runtime


def section() -> type[BaseModel]:
    from edge.kpi.config import KpiConfig

    return KpiConfig


def component(ctx: ComponentContext) -> Any:
    from edge.kpi.component import create

    return create(ctx)


def routes(app: web.Application, runtime: Runtime) -> None:
    from edge.kpi import api

    api.setup(app, runtime)


def openapi() -> Mapping[str, Any]:
    from edge.kpi import openapi

    return openapi.paths()


def check_targets(site: Site) -> list[str]:
    """`kpi.devices` entries that name no device of the site (a typo would silently keep the
    site's targets for the device meant)."""
    kpi = site.sections.get("kpi")
    known = {d.id for d in site.devices}
    return [
        f"{site.source}: kpi.devices.{dev}: no device {dev!r} in this site; known: {', '.join(sorted(known)) or 'none'}"
        for dev in sorted(getattr(kpi, "devices", {}) or {})
        if dev not in known
    ]


def commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from edge.kpi import cli

    cli.register(sub)


PLUGIN = Plugin(
    name="kpi",
    sections={"kpi": section},
    component=component,
    routes=routes,
    openapi=openapi,
    commands=commands,
    check=check_targets,
    order=60,
)
