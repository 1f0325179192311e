"""`edge demo`: a simulated community site (Modbus meters and gates simulated in-process, a camera
reading a drawn video, simulated sensors) served with its web UI. This manifest names its code:
the command (edge.demo.cli) and the kiosk's drivers (edge.demo.kiosk) are imported when used."""

from __future__ import annotations

from edge.plugins import Plugin, Spec, lazy, lazy_value

PLUGIN = Plugin(
    name="demo",
    commands=lazy("edge.demo.cli:register"),
    order=0,
    drivers={
        "demo_kiosk": Spec(
            lazy_value("edge.demo.kiosk:DemoKioskDevice"), lazy_value("edge.demo.kiosk:DemoKioskDriver")
        ),
        "demo_ble": Spec(
            lazy_value("edge.demo.kiosk:DemoBleDevice"), lazy_value("edge.demo.kiosk:DemoBleDriver")
        ),
    },
)
