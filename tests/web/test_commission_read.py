"""The commissioning test-read asks the device now (`source: device`) through a real runtime: a
Modbus meter on a real pymodbus server on loopback and simulated devices; a device that does not
answer is a 502 with the driver's reason, and every read is in the audit log."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus import codec
from drivers.sim.driver import SimDevice, SimDriver
from edge.driver import DeviceReadError, DriverContext, reads_on_demand
from edge.model import Quality
from tests.modbus.servers import TcpServer, tcp_server
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import Client, signed_in_admin


def site_doc(modbus_port: int) -> dict[str, Any]:
    return {
        "devices": [
            {
                "id": "meter-b9",
                "driver": "modbus",
                "connection": {"transport": "tcp", "host": "127.0.0.1", "port": modbus_port},
                "unit": 5,
                "poll": "1h",  # the poll has seen only the first value; the read must ask the device
                "retries": 0,
                "points": [{"name": "voltage", "table": "holding", "address": 0x10, "type": "float32"}],
            },
            {
                "id": "bin-east-1",
                "driver": "sim",
                "points": [{"name": "fill_pct", "signal": "constant", "value": 42, "interval": "1h"}],
            },
            {
                "id": "kiosk-2",
                "driver": "sim",
                "points": [{"name": "temp_c", "signal": "constant", "value": 36.6, "interval": "100ms"}],
                "faults": [{"type": "dropout", "first_after": 0, "every": "1h", "duration": "1h"}],
            },
        ]
    }


def voltage(v: float) -> dict[int, int]:
    return {0x10 + i: r for i, r in enumerate(codec.encode(v, "float32", "ABCD"))}


@pytest.fixture
async def meter() -> AsyncIterator[TcpServer]:
    async with tcp_server({5: {"holding": voltage(230.25)}}) as srv:
        yield srv


@pytest.fixture
async def admin_on(tmp_path: Path, meter: TcpServer) -> AsyncIterator[tuple[Any, Client]]:
    async with running_site(tmp_path, site_doc(meter.port)) as rt, signed_in_admin(rt) as c:
        yield rt, c


async def test_modbus_read_asks_the_device_now_and_a_stopped_device_is_a_502(
    admin_on: tuple[Any, Client], meter: TcpServer
) -> None:
    rt, c = admin_on
    await until(lambda: rt.hub.latest.get("meter-b9.voltage"), what="the first poll")
    assert rt.hub.latest["meter-b9.voltage"].value == 230.25
    await meter.set(5, "holding", 0x10, list(voltage(231.5).values()))

    got = await c.json("POST", "/api/v1/commission/read", {"point": "meter-b9.voltage"})
    assert got["source"] == "device" and got["value"] == 231.5 and got["quality"] == "good"
    assert got["point"] == "meter-b9.voltage" and got["age_s"] < 5 and abs(got["ts"] - time.time()) < 5
    assert isinstance(got["duration_ms"], float) and 0 < got["duration_ms"] < 5000
    assert rt.hub.latest["meter-b9.voltage"].value == 230.25  # a look, not data

    await meter.stop()
    resp = await c.request("POST", "/api/v1/commission/read", json={"point": "meter-b9.voltage"})
    problem = await resp.json(content_type=None)
    assert resp.status == 502 and problem["title"] == "Device did not answer", problem
    assert problem["detail"].startswith("meter-b9 did not answer read_holding_registers 16+2: ")
    assert f"127.0.0.1:{meter.port}" in problem["detail"]

    entries = (await c.json("GET", "/api/v1/audit?action=commission_read"))["entries"]
    mine = [e for e in entries if e["action"] == "commission_read"]
    assert [(e["target"], e["detail"]["ok"]) for e in mine] == [
        ("meter-b9.voltage", False),
        ("meter-b9.voltage", True),
    ]
    assert mine[0]["actor"] == "admin" and "did not answer" in mine[0]["detail"]["reason"]
    assert mine[1]["detail"]["source"] == "device" and "value" not in mine[1]["detail"]


async def test_sim_read_comes_from_the_device_and_a_dropout_is_a_502(admin_on: tuple[Any, Client]) -> None:
    _rt, c = admin_on
    got = await c.json("POST", "/api/v1/commission/read", {"point": "bin-east-1.fill_pct"})
    assert got["source"] == "device" and got["value"] == 42 and got["duration_ms"] is not None

    resp = await c.request("POST", "/api/v1/commission/read", json={"point": "kiosk-2.temp_c"})
    problem = await resp.json(content_type=None)
    assert resp.status == 502 and problem["title"] == "Device did not answer"
    assert problem["detail"] == "device kiosk-2 does not answer (simulated dropout)"

    resp = await c.request("POST", "/api/v1/commission/read", json={"point": "kiosk-2.nope"})
    assert resp.status == 404


async def test_a_driver_without_on_demand_read_answers_its_last_poll(admin_on: tuple[Any, Client]) -> None:
    rt, c = admin_on
    slot = rt.slots["bin-east-1"]
    await until(lambda: rt.hub.latest.get("bin-east-1.fill_pct"), what="the first sample")

    class LastPollOnly:
        """A driver as the contract allows it: no read() of its own."""

        health = slot.driver.health

    real, slot.driver = slot.driver, LastPollOnly()
    try:
        assert not reads_on_demand(slot.driver) and reads_on_demand(real)
        got = await c.json("POST", "/api/v1/commission/read", {"point": "bin-east-1.fill_pct"})
        assert got["source"] == "last_poll" and got["value"] == 42 and got["duration_ms"] is None
    finally:
        slot.driver = real


def sim_driver(doc: dict[str, Any], clock: Any) -> SimDriver:
    dev = SimDevice.model_validate({"id": "kiosk-2", "driver": "sim", **doc})
    return SimDriver(dev, DriverContext("test", "/tmp", logging.getLogger("test.sim"), clock))


async def test_sim_read_fails_during_a_dropout_and_answers_after_it() -> None:
    now = [1000.0]
    doc = {
        "seed": 7,
        "points": [
            {"name": "temp_c", "signal": "constant", "value": 36.6},
            {"name": "visits", "type": "int", "signal": "counter", "start": 5, "step": 1},
        ],
        "faults": [{"type": "dropout", "first_after": 10, "every": 100, "duration": 20}],
    }
    driver = sim_driver(doc, lambda: now[0])
    reading = await driver.read("temp_c")
    assert (reading.point, reading.value, reading.quality) == ("kiosk-2.temp_c", 36.6, Quality.GOOD)
    # a look does not move a stateful signal on
    assert (await driver.read("visits")).value == 5 and (await driver.read("visits")).value == 5
    now[0] = 1015.0  # inside the dropout
    with pytest.raises(DeviceReadError, match="does not answer") as err:
        await driver.read("temp_c")
    assert err.value.no_answer
    now[0] = 1035.0  # over
    assert (await driver.read("temp_c")).value == 36.6
    with pytest.raises(LookupError):
        await driver.read("nope")
