"""A `no_data` dead-man counts from the point's last good reading, across a restart: a gateway that
restarts while a meter is silent (more often than the period, even) still raises the alert at the
last good reading plus the period. A point registered only when it reports (a BLE sensor's
default-map value) is watched after a restart too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from drivers.ble.bthome import SERVICE_UUID
from edge.model import Event, Quality, Reading
from tests.ble.bluez import ADAPTER, MockBluez
from tests.ble.conftest import bluez
from tests.support.site import running_site
from tests.support.waiting import until

# a meter nobody answers for (nothing listens on port 1): it never sends a good reading
METER_SITE = {
    "devices": [
        {
            "id": "m",
            "driver": "modbus",
            "connection": {"transport": "tcp", "host": "127.0.0.1", "port": 1},
            "unit": 1,
            "poll": "1s",
            "points": [{"name": "kwh", "table": "input", "address": 0, "type": "float32"}],
        }
    ]
}
CLIMATE = "A4:C1:38:00:00:02"
EXAMPLE = bytes.fromhex("40 01 61 02 29 09 03 7c 15")  # battery 97 %, 23.45 degC, 55.00 % RH
CLIMATE_SITE = {"devices": [{"id": "climate-hall", "driver": "ble", "address": CLIMATE, "adapter": ADAPTER}]}


__all__ = ["bluez"]  # the BLE tests' fixture


def dead_man(point: str, period: str) -> dict[str, Any]:
    return {
        "id": "dead",
        "when": [{"no_data": point, "for": period}],
        "notify": "toggle",
        "then": [{"alert": "dead {point}"}],
    }


def alerts(seen: list[Any]) -> list[Event]:
    return [r for r in seen if isinstance(r, Event) and r.kind == "alert"]


async def test_a_restart_does_not_restart_the_no_data_clock(tmp_path: Path) -> None:
    # the last good reading came 20 s ago; the period is 30 s: due 10 s from now, whatever restarts
    t0 = time.time() - 20
    async with running_site(tmp_path, METER_SITE, web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        rt.components["rules"].put(dead_man("m.kwh", "30s"), "test", "create")
        rt.hub.ingest([Reading(t0, "m.kwh", 5.0)])
    assert alerts(seen) == [], "the first run lasted past the deadline: nothing to judge"

    async with running_site(tmp_path, METER_SITE, web=False) as rt:
        seen = []
        rt.hub.subscribe(seen.extend)
        # readings that are not good do not count as data
        rt.hub.ingest([Reading(time.time(), "m.kwh", 5.0, Quality.STALE)])
        fired = await until(lambda: alerts(seen), timeout=20, what="the dead-man alert")
        assert [e.payload["message"] for e in fired] == ["dead m.kwh"]
        assert fired[0].ts == pytest.approx(t0 + 30, abs=0.01)  # not the restart + 30 s


async def test_a_point_registered_on_its_first_report_is_watched_after_a_restart(
    tmp_path: Path, bluez: MockBluez
) -> None:
    point = "climate-hall.temperature"
    async with running_site(tmp_path, CLIMATE_SITE, web=False) as rt:
        rt.components["rules"].put(dead_man(point, "8s"), "test", "create")
        path = await bluez.add_device(CLIMATE)
        await bluez.advertise(path, {SERVICE_UUID: EXAMPLE})
        last = await until(lambda: rt.hub.latest.get(point), what="a reading of the sensor")
        assert point in rt.hub.points  # registered by the driver when the sensor first reported

    # the sensor stays silent: after the restart nothing registers its points
    async with running_site(tmp_path, CLIMATE_SITE, web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        assert point not in rt.hub.points
        fired = await until(lambda: alerts(seen), timeout=20, what="the dead-man alert")
        assert [e.payload["message"] for e in fired] == [f"dead {point}"]
        assert fired[0].ts == pytest.approx(last.ts + 8, abs=0.01)
