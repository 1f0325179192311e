"""Protocol drivers. Each is imported only when a site uses it (see `load_driver`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.driver import Driver

#: driver name in the site file -> module that defines `DRIVER` (a Driver subclass).
DRIVER_MODULES: dict[str, str] = {
    "sim": "drivers.sim",
    "modbus": "drivers.modbus",
    "ble": "drivers.ble",
    "camera": "drivers.camera",
}


class UnknownDriver(LookupError):
    pass


def load_driver(name: str) -> type[Driver]:
    """Import the module of driver `name` and return its Driver class."""
    try:
        module_name = DRIVER_MODULES[name]
    except KeyError:
        raise UnknownDriver(
            f"unknown driver {name!r}; known drivers: {', '.join(sorted(DRIVER_MODULES))}"
        ) from None
    module = importlib.import_module(module_name)
    return module.DRIVER  # type: ignore[no-any-return]
