"""The simulated driver's manifest (`driver: sim`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.plugins import Plugin, Spec

if TYPE_CHECKING:
    from pydantic import BaseModel

    from edge.driver import Driver


def device_model() -> type[BaseModel]:
    from drivers.sim.driver import SimDevice

    return SimDevice


def driver() -> type[Driver]:
    from drivers.sim.driver import SimDriver

    return SimDriver


PLUGIN = Plugin(name="sim", drivers={"sim": Spec(device_model, driver)})
