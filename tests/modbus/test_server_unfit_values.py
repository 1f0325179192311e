"""The gateway's Modbus server and values its register types cannot hold: a bool is 1/0 in any
numeric register, a value out of a register's range is a Modbus exception 0x04 for that point's
registers (never a plausible wrong number), logged once and counted; `range_warnings` names the
mapped points whose configured range cannot fit."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus import codec
from drivers.modbus.check import range_warnings
from edge.model import Reading
from tests.modbus.test_server_and_probe import modbus_client
from tests.support.site import load, running_site


def site(points: list[dict[str, Any]]) -> dict[str, Any]:
    """dev1 (relay bool, power int32, temp int16 scale 0.1, label text; not polled) served."""
    return {
        "devices": [
            {
                "id": "dev1",
                "driver": "modbus",
                "enabled": False,  # values are injected by the tests; the point ids must exist
                "connection": {"transport": "tcp", "host": "127.0.0.1"},
                "points": [
                    {"name": "relay", "address": 11, "type": "bool"},
                    {"name": "power", "address": 0, "type": "int32"},
                    {"name": "temp", "address": 2, "type": "int16", "scale": 0.1},
                    {"name": "label", "address": 20, "type": "string", "length": 4},
                    {"name": "level", "address": 30, "type": "uint16"},
                    {"name": "volts", "address": 40, "type": "float32"},
                ],
            }
        ],
        "modbus_server": {"listen": "127.0.0.1:0", "unit": 1, "points": points},
    }


MAP = [
    {"point": "dev1.relay", "address": 0, "type": "uint16"},
    {"point": "dev1.power", "address": 1, "type": "uint16"},
    {"point": "dev1.temp", "address": 2, "type": "int16", "scale": 0.1},
    {"point": "dev1.relay", "address": 3, "type": "float32"},
    {"point": "dev1.temp", "address": 5, "type": "uint16", "scale": 0.1},
]


async def test_bools_read_1_and_values_that_do_not_fit_are_exception_04(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_site(tmp_path, site(MAP), web=False) as rt:
        server = rt.components["modbus_server"]
        rt.hub.ingest(
            [
                Reading(time.time(), "dev1.relay", True),
                Reading(time.time(), "dev1.power", 70000),
                Reading(time.time(), "dev1.temp", -1.0),
            ]
        )
        caplog.set_level(logging.WARNING, logger="drivers.modbus.server")
        async with modbus_client(server.port) as client:
            r = await client.read_holding_registers(0, count=1, device_id=1)
            assert r.registers == [1]  # the relay, on
            r = await client.read_holding_registers(3, count=2, device_id=1)
            assert codec.decode(r.registers, "float32") == 1.0
            for _ in range(3):  # 70000 in a uint16: no number is better than a wrong one
                r = await client.read_holding_registers(1, count=1, device_id=1)
                assert r.isError() and r.exception_code == 0x04, r
            r = await client.read_holding_registers(0, count=3, device_id=1)  # any read over it
            assert r.isError() and r.exception_code == 0x04, r
            r = await client.read_holding_registers(5, count=1, device_id=1)  # -1.0 in a uint16
            assert r.isError() and r.exception_code == 0x04, r
            r = await client.read_holding_registers(2, count=1, device_id=1)  # -1.0 in an int16 fits
            assert codec.decode(r.registers, "int16", scale=0.1) == -1.0
            rt.hub.ingest(
                [Reading(time.time(), "dev1.relay", False), Reading(time.time(), "dev1.power", 650)]
            )
            r = await client.read_holding_registers(0, count=5, device_id=1)  # back in range: served
            assert not r.isError(), r
            assert r.registers[:2] == [0, 650]
            assert codec.decode(r.registers[3:5], "float32") == 0.0

        status = server.status()
        assert status["out_of_range"] == 5
        assert server.counters["out_of_range"] == 5
        assert status["out_of_range_points"] == ["dev1.power", "dev1.temp"]
        mbpoll = shutil.which("mbpoll")
        if mbpoll:  # what a BMS technician would try first
            rt.hub.ingest([Reading(time.time(), "dev1.power", 70000)])
            out = await asyncio.to_thread(
                subprocess.run,
                [mbpoll, "-1", "-a", "1", "-t", "4", "-r", "2", "-p", str(server.port), "127.0.0.1"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert out.returncode != 0 and "Slave device or server failure" in out.stderr, out
    lines = [r.getMessage() for r in caplog.records if r.name == "drivers.modbus.server"]
    unfit = [line for line in lines if "cannot be served" in line]
    assert len(unfit) == 2, lines  # once per served entry, not once per read
    assert "dev1.power" in unfit[0] and "70000 is out of range for uint16" in unfit[0]
    assert "dev1.temp" in unfit[1] and "0x04" in unfit[1]


def test_range_warnings_name_points_whose_range_cannot_fit(tmp_path: Path) -> None:
    points = [
        {"point": "dev1.power", "address": 0, "type": "uint16"},  # int32: can exceed
        {"point": "dev1.power", "address": 1, "type": "float32"},  # fits
        {"point": "dev1.temp", "address": 3, "type": "uint16", "scale": 0.1},  # negative temps
        {"point": "dev1.temp", "address": 4, "type": "int16", "scale": 0.1},  # the same range
        {"point": "dev1.relay", "address": 5, "type": "uint16"},  # a bool is 1/0
        {"point": "dev1.label", "address": 6, "type": "int16"},  # text in a number
        {"point": "dev1.level", "address": 7, "type": "int16"},  # 0..65535 into -32768..32767
        {"point": "dev1.level", "address": 8, "type": "uint32"},  # fits
        {"point": "dev1.volts", "address": 10, "type": "uint16"},  # a float: range unknown
    ]
    lines = range_warnings(load(tmp_path, site(points)))
    assert [line.split(":")[0] for line in lines] == [
        "modbus_server.points[0]",
        "modbus_server.points[2]",
        "modbus_server.points[5]",
        "modbus_server.points[6]",
    ], lines
    assert "dev1.power (int32: -2147483648..2147483647) can exceed uint16 at holding address 0" in lines[0]
    assert "(int16 scale 0.1: -3276.8..3276.7) can exceed uint16 scale 0.1" in lines[1]
    assert "text" in lines[2] and "0x04" in lines[2]
    assert all(": warning: " in line for line in lines)


async def test_the_server_logs_the_range_warnings_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.modbus.server")
    async with running_site(tmp_path, site(MAP), web=False) as rt:
        assert len(rt.components["modbus_server"].warnings) == 2
    started = [r.getMessage() for r in caplog.records if "warning: dev1." in r.getMessage()]
    assert [line.split(":")[0] for line in started] == ["modbus_server.points[1]", "modbus_server.points[4]"]
