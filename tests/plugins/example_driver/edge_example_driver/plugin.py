"""The example driver's manifest, named by this package's entry point in the
`community_edge.plugins` group. It imports nothing heavy: the driver module is loaded only when a
site uses `driver: example`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.plugins import Plugin, Spec

if TYPE_CHECKING:
    from pydantic import BaseModel

    from edge.driver import Driver


def device_model() -> type[BaseModel]:
    from edge_example_driver.driver import ExampleDevice

    return ExampleDevice


def driver() -> type[Driver]:
    from edge_example_driver.driver import ExampleDriver

    return ExampleDriver


PLUGIN = Plugin(name="example", drivers={"example": Spec(device_model, driver)})
