"""p() of a point of a device that registers its points as it reports them (a BLE device on its
default map: the site file gives none) is None before the device reports, which a rule may ask
for (`p(...) is None or ...`), not an error; once it reports, p() gives its value. A point the site
file would have given (a device with declared points, or no configured device) is still a
misspelt id, named in the rule's error."""

from __future__ import annotations

import time
from pathlib import Path

from drivers.ble.bthome import SERVICE_UUID
from edge.model import Event, Reading
from tests.ble.bluez import ADAPTER, MockBluez
from tests.ble.conftest import bluez  # noqa: F401  (the mock BlueZ fixture)
from tests.support.site import running_site
from tests.support.waiting import until

CLIMATE = "A4:C1:38:00:00:02"
EXAMPLE = bytes.fromhex("40 01 61 02 29 09 03 7c 15")  # battery 97 %, 23.45 degC, 55.00 % RH
UNREPORTED = "climate-hall.temperature"
SITE = {
    "devices": [
        {
            "id": "m",
            "driver": "sim",
            "points": [{"name": "v", "signal": "constant", "value": 0, "interval": "1h"}],
        },
        {"id": "climate-hall", "driver": "ble", "address": CLIMATE, "adapter": ADAPTER},  # default map
    ]
}


def _alerts(events: list[Event], rule: str) -> list[str]:
    return [
        str(e.payload.get("message")) for e in events if e.kind == "alert" and e.payload.get("rule") == rule
    ]


async def test_a_point_not_reported_yet_is_none(tmp_path: Path, bluez: MockBluez) -> None:  # noqa: F811
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        assert UNREPORTED not in rt.hub.points
        events: list[Event] = []
        rt.hub.subscribe(lambda recs: events.extend(r for r in recs if isinstance(r, Event)))
        comp.put(
            {
                "id": "waits",
                "when": "m.v",
                "notify": "always",
                "if": f"p('{UNREPORTED}') is None or p('{UNREPORTED}') > 20",
                "then": [{"alert": "hall {value}"}],
            },
            "admin",
            "create",
        )
        for rule_id, point in (("typo", "m.vv"), ("nodev", "climate-hal.temperature")):
            comp.put(
                {"id": rule_id, "when": "m.v", "if": f"p('{point}') is None", "then": [{"alert": "never"}]},
                "admin",
                "create",
            )
        rt.hub.ingest([Reading(time.time(), "m.v", 1.0)])
        await until(lambda: _alerts(events, "waits"), what="the alert of the rule asking for None")
        assert comp.engine.rules["waits"].error == ""
        await until(lambda: comp.engine.rules["typo"].error and comp.engine.rules["nodev"].error)
        assert "m.vv" in comp.engine.rules["typo"].error
        assert "climate-hal.temperature" in comp.engine.rules["nodev"].error

        # the device reports: p() gives its value
        path = await bluez.add_device(CLIMATE)
        await bluez.advertise(path, {SERVICE_UUID: EXAMPLE})
        await until(lambda: UNREPORTED in rt.hub.latest, what="the hall's first packet")
        rt.hub.ingest([Reading(time.time(), "m.v", 2.0)])
        await until(lambda: len(_alerts(events, "waits")) >= 2, what="the rule evaluated again")
        assert comp.engine.rules["waits"].error == ""
        assert not any(e.kind == "rule_error" and e.payload.get("rule") == "waits" for e in events)
