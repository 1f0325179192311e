"""The upstream sync manifest: the `http` and `influxdb` push sinks, the sync component (which
also keeps the pull consumers' cursors), its HTTP routes (`GET /api/v1/sync`, the dead letters)
with their OpenAPI paths, and `edge sync status`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin, Spec

if TYPE_CHECKING:
    import argparse

    from aiohttp import web
    from pydantic import BaseModel

    from edge.plugins import ComponentContext
    from edge.runtime import Runtime


def http_model() -> type[BaseModel]:
    from edge.sync.http_sink import HttpSinkConfig

    return HttpSinkConfig


def http_sink() -> Any:
    from edge.sync.http_sink import HttpSink

    return HttpSink


def influx_model() -> type[BaseModel]:
    from edge.sync.influx_sink import InfluxSinkConfig

    return InfluxSinkConfig


def influx_sink() -> Any:
    from edge.sync.influx_sink import InfluxSink

    return InfluxSink


def component(ctx: ComponentContext) -> Any:
    from edge.sync.component import create

    return create(ctx)


def routes(app: web.Application, runtime: Runtime) -> None:
    from edge.sync import api

    api.setup(app, runtime)


def openapi() -> Mapping[str, Any]:
    from edge.sync import openapi

    return openapi.paths()


def commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from edge.sync import cli

    cli.register(sub)


PLUGIN = Plugin(
    name="sync",
    sinks={"http": Spec(http_model, http_sink), "influxdb": Spec(influx_model, influx_sink)},
    component=component,
    routes=routes,
    openapi=openapi,
    commands=commands,
    order=20,
)
