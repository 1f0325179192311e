"""The Modbus manifest: `driver: modbus` (TCP, RTU, RTU over TCP), the `modbus_server:` section
and its server component, the commissioning test-read (`POST /api/v1/commission/read`) and
`edge modbus probe`. pymodbus and pyserial come with the `modbus`
extra."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin, Spec

if TYPE_CHECKING:
    import argparse

    from aiohttp import web
    from pydantic import BaseModel

    from edge.config import Site
    from edge.driver import Driver
    from edge.plugins import ComponentContext
    from edge.runtime import Runtime


def device_model() -> type[BaseModel]:
    from drivers.modbus.config import ModbusDevice

    return ModbusDevice


def driver() -> type[Driver]:
    from drivers.modbus.driver import ModbusDriver

    return ModbusDriver


def server_section() -> type[BaseModel]:
    from drivers.modbus.server import ServerConfig

    return ServerConfig


def server_component(ctx: ComponentContext) -> Any:
    if ctx.site.sections.get("modbus_server") is None:
        return None  # as `create` answers, without loading the server for a site that has none
    from drivers.modbus.server import create

    return create(ctx)


def routes(app: web.Application, runtime: Runtime) -> None:
    from drivers.modbus import commission

    commission.setup(app, runtime)


def openapi() -> Mapping[str, Any]:
    from drivers.modbus.openapi import paths

    return paths()


def warnings(site: Site) -> list[str]:
    if site.sections.get("modbus_server") is None:
        return []
    from drivers.modbus.check import range_warnings

    return range_warnings(site)


def commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from drivers.modbus import cli

    cli.register(sub)


PLUGIN = Plugin(
    name="modbus",
    extra="modbus",
    requires=("pymodbus", "serial"),
    drivers={"modbus": Spec(device_model, driver)},
    sections={"modbus_server": server_section},
    component=server_component,
    routes=routes,
    openapi=openapi,
    warnings=warnings,
    commands=commands,
    order=30,
)
