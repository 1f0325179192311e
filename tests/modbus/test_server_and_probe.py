"""Server mode (the gateway as a Modbus TCP server) and the `edge modbus probe` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus import codec
from edge.model import Quality, Reading
from tests.modbus.servers import registers_for, tcp_server
from tests.support.site import load, running_site


@contextlib.asynccontextmanager
async def modbus_client(port: int) -> AsyncIterator[Any]:
    """A pymodbus TCP client (what a BMS would use) connected to `port` on loopback, closed on exit."""
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    try:
        yield client
    finally:
        client.close()


def served_site(points: list[dict[str, Any]], **server: Any) -> dict[str, Any]:
    """A site whose meter-b1 (voltage, energy, door; not polled) is served by `modbus_server:`."""
    return {
        "devices": [
            {
                "id": "meter-b1",
                "driver": "modbus",
                "enabled": False,  # values are injected by the tests; the point ids must exist
                "connection": {"transport": "tcp", "host": "127.0.0.1"},
                "points": [
                    {"name": "voltage", "table": "input", "address": 0, "type": "float32"},
                    {"name": "energy", "table": "input", "address": 2, "type": "uint32"},
                    {"name": "door", "table": "coil", "address": 0},
                ],
            }
        ],
        # the server binds a free port itself: no port to lose to others
        "modbus_server": {"listen": "127.0.0.1:0", "unit": 1, "points": points, **server},
    }


async def test_server_mode_serves_hub_values(tmp_path: Path) -> None:
    doc = served_site(
        [
            {"point": "meter-b1.voltage", "address": 0, "type": "float32"},
            {"point": "meter-b1.energy", "address": 2, "type": "uint32", "order": "CDAB"},
            {"point": "meter-b1.door", "table": "coil", "address": 3},
            {"point": "nowhere.value", "address": 10},
        ]
    )
    async with running_site(tmp_path, doc, web=False) as rt:
        now = time.time()
        rt.hub.ingest(
            [
                Reading(now, "meter-b1.voltage", 231.5),
                Reading(now, "meter-b1.energy", 123456),
                Reading(now, "meter-b1.door", True),
            ]
        )
        status = rt.components["modbus_server"].status()
        assert status["unknown_points"] == ["nowhere.value"]
        port = status["port"]
        assert port
        async with modbus_client(port) as client:
            r = await client.read_holding_registers(0, count=4, device_id=1)
            assert codec.decode(r.registers[0:2], "float32") == 231.5
            assert codec.decode(r.registers[2:4], "uint32", "CDAB") == 123456
            bits = await client.read_coils(0, count=4, device_id=1)
            assert bits.bits[:4] == [False, False, False, True]
            rt.hub.ingest([Reading(time.time(), "meter-b1.voltage", 230.0, Quality.STALE)])
            r = await client.read_holding_registers(0, count=2, device_id=1)
            v = codec.decode(r.registers, "float32")
            assert v != v  # NaN: a value that is not good is not served as if it were
            refused = await client.write_register(0, 1, device_id=1)
            assert refused.isError()
        assert rt.components["modbus_server"].status()["requests"] >= 3

        mbpoll = shutil.which("mbpoll")
        if mbpoll:  # Debian's mbpoll reads it too (what a BMS technician would try first)
            rt.hub.ingest([Reading(time.time(), "meter-b1.voltage", 229.75)])
            out = await asyncio.to_thread(
                subprocess.run,
                [mbpoll, "-1", "-B", "-a", "1", "-t", "4:float", "-r", "1", "-p", str(port), "127.0.0.1"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert out.returncode == 0, out.stderr
            assert "[1]: \t229.75" in out.stdout


GAPPED = [  # holding 0-1 and 10-11 are served; 2-9 belong to no point
    {"point": "meter-b1.voltage", "address": 0, "type": "float32"},
    {"point": "meter-b1.energy", "address": 10, "type": "uint32"},
]


async def test_unknown_unit_gets_exception_0x0b_one_log_line_and_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pymodbus")
    async with running_site(tmp_path, served_site(GAPPED), web=False) as rt:
        rt.hub.ingest([Reading(time.time(), "meter-b1.voltage", 231.5)])
        server = rt.components["modbus_server"]
        caplog.clear()
        async with modbus_client(server.port) as client:
            for _ in range(40):  # a BMS polling the wrong unit
                r = await client.read_holding_registers(0, count=2, device_id=7)
                assert r.isError() and r.exception_code == 0x0B
            r = await client.read_coils(0, count=1, device_id=9)
            assert r.isError() and r.exception_code == 0x0B
            r = await client.write_register(0, 1, device_id=9)
            assert r.isError() and r.exception_code == 0x0B
            # the served unit still answers, and a read across the unmapped 2-9 is refused
            r = await client.read_holding_registers(0, count=2, device_id=1)
            assert codec.decode(r.registers, "float32") == 231.5
            r = await client.read_holding_registers(0, count=12, device_id=1)
            assert r.isError() and r.exception_code == 0x02
        mbpoll = shutil.which("mbpoll")
        if mbpoll:  # what a BMS technician would try first
            out = await asyncio.to_thread(
                subprocess.run,
                [mbpoll, "-1", "-a", "7", "-t", "4", "-r", "1", "-p", str(server.port), "127.0.0.1"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert out.returncode != 0
            assert "Target device failed to respond" in out.stderr  # libmodbus names 0x0B so
        assert server.counters["unknown_unit_requests"] == 42 + (1 if mbpoll else 0)
        assert server.status()["unknown_units"] == {"7": 40 + (1 if mbpoll else 0), "9": 2}
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in lines] == ["drivers.modbus.server"] * 2, [r.getMessage() for r in lines]
    assert "unit 7" in lines[0].getMessage() and "0x0B" in lines[0].getMessage()
    assert "unit 9" in lines[1].getMessage()
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


async def test_unknown_unit_count_reaches_metrics(tmp_path: Path) -> None:
    from edge.api.metrics import RuntimeCollector

    async with running_site(tmp_path, served_site(GAPPED), web=False) as rt:
        async with modbus_client(rt.components["modbus_server"].port) as client:
            for _ in range(3):
                assert (await client.read_holding_registers(0, count=2, device_id=7)).exception_code == 0x0B
        # read through the collector /metrics serves, where the drivers' own counters are
        family = next(f for f in RuntimeCollector(rt).collect() if f.name == "edge_driver_count")
        counts = {(s.labels["device"], s.labels["counter"]): s.value for s in family.samples}
        assert counts[("modbus_server", "unknown_unit_requests")] == 3


async def test_fill_gaps_zeros_serves_the_holes_between_points(tmp_path: Path) -> None:
    async with running_site(tmp_path, served_site(GAPPED, fill_gaps="zeros"), web=False) as rt:
        rt.hub.ingest(
            [Reading(time.time(), "meter-b1.voltage", 231.5), Reading(time.time(), "meter-b1.energy", 70000)]
        )
        server = rt.components["modbus_server"]
        async with modbus_client(server.port) as client:
            r = await client.read_holding_registers(0, count=12, device_id=1)
            assert not r.isError(), r
            assert codec.decode(r.registers[0:2], "float32") == 231.5
            assert r.registers[2:10] == [0] * 8
            assert codec.decode(r.registers[10:12], "uint32") == 70000
            # past the last mapped register is still no register at all
            r = await client.read_holding_registers(10, count=3, device_id=1)
            assert r.isError() and r.exception_code == 0x02


async def test_points_above_max_privacy_are_served_as_having_no_value(tmp_path: Path) -> None:
    """Modbus TCP has no authentication: a health value mapped by mistake, or a point a rule raised
    to sensitive, must not be readable by whoever reaches the port."""
    from edge.model import PointInfo, Privacy

    async with running_site(tmp_path, served_site(GAPPED), web=False) as rt:
        rt.hub.ingest(
            [Reading(time.time(), "meter-b1.voltage", 231.5), Reading(time.time(), "meter-b1.energy", 7)]
        )
        server = rt.components["modbus_server"]
        async with modbus_client(server.port) as client:
            r = await client.read_holding_registers(0, count=2, device_id=1)
            assert codec.decode(r.registers, "float32") == 231.5  # public: served
            info = rt.hub.points["meter-b1.voltage"]
            rt.hub.register_points(
                [PointInfo(info.id, info.device, info.name, info.type, privacy=Privacy.SENSITIVE)]
            )
            r = await client.read_holding_registers(0, count=2, device_id=1)
            v = codec.decode(r.registers, "float32")
            assert v != v, "a sensitive value was served"
            r = await client.read_holding_registers(10, count=2, device_id=1)
            assert codec.decode(r.registers, "uint32") == 7  # the public point beside it still is
        assert server.status()["withheld_privacy"] >= 1


async def test_fill_gaps_accepts_only_refuse_or_zeros(tmp_path: Path) -> None:
    from edge.config import ConfigError

    with pytest.raises(ConfigError) as info:
        load(tmp_path, served_site(GAPPED, fill_gaps="ones"))
    text = "\n".join(str(p) for p in info.value.problems)
    assert "fill_gaps" in text and "'refuse'" in text and "'zeros'" in text, text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )


async def test_probe_prints_every_word_order() -> None:
    regs = registers_for({"holding": [(0x10, "float32", 230.25, "CDAB"), (0x12, "float32", 50.0, "CDAB")]})
    async with tcp_server({5: {"holding": regs["holding"]}}) as srv:
        # the CLI runs in its own process; the server keeps serving from this loop meanwhile
        out = await asyncio.to_thread(
            run_cli,
            "modbus", "probe", "--host", "127.0.0.1", "--port", str(srv.port), "--unit", "5",
            "--address", "0x10", "--count", "4", "--type", "float32",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        text = out.stdout
        assert "raw registers:" in text and "(0x0010)" in text
        raw, _, decoded = text.partition("in each word order:")
        assert "0x4366" in raw  # the high half of 230.25, second register in CDAB order
        header, *rows = [line.split() for line in decoded.strip().splitlines()]
        assert header == ["address", "ABCD", "CDAB", "BADC", "DCBA"]
        assert rows[0][0] == "16" and rows[0][2] == "230.25"  # the CDAB column
        assert rows[1][0] == "18" and rows[1][2] == "50"
        js = await asyncio.to_thread(
            run_cli, "modbus", "probe", "--host", "127.0.0.1", "--port", str(srv.port), "--unit", "5",
            "--address", "16", "--count", "2", "--json",
        )  # fmt: skip
        data = json.loads(js.stdout)
        assert data["decoded"][0]["orders"]["CDAB"] == 230.25
        bad = await asyncio.to_thread(
            run_cli, "modbus", "probe", "--host", "127.0.0.1", "--port", str(srv.port), "--unit", "5",
            "--address", "1000", "--count", "2",
        )  # fmt: skip
        assert bad.returncode == 1 and "illegal data address" in bad.stderr


def test_probe_help_is_complete() -> None:
    out = run_cli("modbus", "probe", "--help")
    assert out.returncode == 0
    for opt in ("--host", "--serial", "--unit", "--table", "--address", "--count", "--type", "--json"):
        assert opt in out.stdout


async def test_a_served_point_with_scale_holds_value_divided_by_scale(tmp_path: Path) -> None:
    """`scale` means the same served as polled (value = register x scale): 50.00 Hz with
    `scale: 0.01` is register 5000, as docs/modbus.md documents."""
    points = [{"point": "meter-b1.voltage", "address": 0, "type": "uint16", "scale": 0.01}]
    async with running_site(tmp_path, served_site(points), web=False) as rt:
        rt.hub.ingest([Reading(time.time(), "meter-b1.voltage", 50.0)])
        server = rt.components["modbus_server"]
        async with modbus_client(server.port) as client:
            r = await client.read_holding_registers(0, count=1, device_id=1)
            assert not r.isError(), r
            assert r.registers == [5000]
