"""The upstream sync manifest: the `http` and `influxdb` push sinks, the sync component (which
also keeps the pull consumers' cursors) and `edge sync status`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin, Spec

if TYPE_CHECKING:
    import argparse

    from pydantic import BaseModel

    from edge.plugins import ComponentContext


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


def commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from edge.sync import cli

    cli.register(sub)


PLUGIN = Plugin(
    name="sync",
    sinks={"http": Spec(http_model, http_sink), "influxdb": Spec(influx_model, influx_sink)},
    component=component,
    commands=commands,
    order=20,
)
