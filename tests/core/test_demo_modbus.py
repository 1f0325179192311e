"""The demo's simulated Modbus field devices: decoded by the real driver, driven by real writes,
and served by `edge demo` itself (also when its port is taken, and not for an old site file)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from drivers.modbus.simulator import FieldDeviceSimulator, GateModel
from edge.demo.site import SIM_DEVICES, demo_site, move_simulator_port, prepare, simulator_port
from edge.model import Quality
from tests.support.cli import edge_cli
from tests.support.ports import free_port
from tests.support.site import running_site
from tests.support.waiting import until, until_sync

ROOT = Path(__file__).resolve().parents[2]


def _modbus_devices(tmp_path: Path, port: int) -> dict[str, Any]:
    """The demo's own Modbus device entries, pointed at a simulator on `port`."""
    site = demo_site(tmp_path, sim_port=port)
    devices = [d for d in site["devices"] if d["id"] in SIM_DEVICES]
    assert {d["id"] for d in devices} == set(SIM_DEVICES)
    return {"devices": devices}


@contextlib.asynccontextmanager
async def simulator(**kwargs: Any) -> AsyncIterator[FieldDeviceSimulator]:
    sim = FieldDeviceSimulator("127.0.0.1", 0, **kwargs)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def _good(latest: dict[str, Any], pid: str) -> Any:
    r = latest.get(pid)
    return r is not None and r.quality == Quality.GOOD and r


# ---------------------------------------------------------------- through the real driver
async def test_meter_registers_decode_to_plausible_engineering_values(tmp_path: Path) -> None:
    async with (
        simulator() as sim,
        running_site(tmp_path, _modbus_devices(tmp_path, sim.port), web=False) as rt,
    ):
        latest = rt.hub.latest
        names = ["voltage_a", "voltage_b", "voltage_c", "current_a", "active_power", "active_power_a"]
        names += ["power_factor", "frequency", "energy_import"]
        await until(lambda: all(_good(latest, f"meter-main.{n}") for n in names), 15, what="meter readings")
        v = {n: latest[f"meter-main.{n}"].value for n in names}
        for phase in "abc":
            assert 200 <= v[f"voltage_{phase}"] <= 250, v
        assert 49.5 <= v["frequency"] <= 50.5, v
        assert 0.8 <= v["power_factor"] <= 1.0, v
        assert 1000 <= v["active_power"] <= 40000, v  # watts: a residential building
        assert 0.2 <= v["active_power_a"] / v["active_power"] <= 0.45, v
        assert 1 <= v["current_a"] <= 100, v
        # P = U I PF per phase (the meter's values are consistent, not just in range); the
        # tolerance covers the deadband letting one point lag the others by a poll
        assert v["active_power_a"] == pytest.approx(
            v["voltage_a"] * v["current_a"] * v["power_factor"], rel=0.05
        )

        first = v["energy_import"]
        assert 10000 < first < 20000, v
        await until(
            lambda: latest["meter-main.energy_import"].value > first, 15, what="energy_import to increase"
        )
        assert sim.requests > 0


async def test_open_cmd_raises_the_barrier_and_close_cmd_lowers_it(tmp_path: Path) -> None:
    async with (
        simulator(vehicle_arrivals=None) as sim,  # no vehicles: the test alone moves the arm
        running_site(tmp_path, _modbus_devices(tmp_path, sim.port), web=False) as rt,
    ):
        latest = rt.hub.latest
        await until(lambda: _good(latest, "gate-south.barrier_closed"), 15, what="gate readings")
        assert latest["gate-south.barrier_closed"].value is True
        assert latest["gate-south.barrier_open"].value is False
        assert latest["gate-south.fault_code"].value == 0
        assert latest["gate-south.vehicle_count"].value == 0

        result = await rt.hub.write("gate-south.open_cmd", True, source="test")
        assert result.ok, result.reason
        await until(lambda: latest["gate-south.barrier_open"].value is True, 10, what="barrier_open")
        assert latest["gate-south.barrier_closed"].value is False

        result = await rt.hub.write("gate-south.close_cmd", True, source="test")
        assert result.ok, result.reason
        await until(lambda: latest["gate-south.barrier_closed"].value is True, 10, what="barrier_closed")
        assert latest["gate-south.barrier_open"].value is False

        refused = await rt.hub.write("gate-south.barrier_open", True, source="test")
        assert not refused.ok  # a limit switch is read-only


async def test_demo_gate_pack_opens_gate_south_for_a_vehicle(tmp_path: Path) -> None:
    pack = ROOT / "deploy" / "rules" / "demo-gate.yaml"
    async with simulator(vehicle_arrivals=(0.5, 1.0)) as sim:
        doc = {**_modbus_devices(tmp_path, sim.port), "rules": {"packs": [str(pack)]}}
        async with running_site(tmp_path, doc, web=False) as rt:
            latest = rt.hub.latest
            await until(
                lambda: (
                    _good(latest, "gate-south.vehicle_count")
                    and latest["gate-south.vehicle_count"].value >= 1
                ),
                20,
                what="a vehicle let through by the rule",
            )
            await rt.journal.flush()
            rows = rt.journal.read(0, 100000)
            commands = [r["payload"] for r in rows if r["type"] == "event" and r["kind"] == "command"]
            assert commands and all(c["point"] == "gate-south.open_cmd" for c in commands)
            assert commands[0]["status"] == "ok" and commands[0]["by"] == "rule:gate-open-cmd-on-loop"


def test_demo_gate_pack_leaves_gates_without_open_cmd_alone() -> None:
    from edge.model import Reading
    from rules.model import compile_pack
    from rules.replay import Replay

    pack = ROOT / "deploy" / "rules" / "demo-gate.yaml"
    rp = Replay(compile_pack(pack.read_text(encoding="utf-8"), pack.name), ZoneInfo("Asia/Shanghai"))
    rp.feed([Reading(1000.0 + i, "gate-north.loop_occupied", v) for i, v in enumerate([False, True, False])])
    rp.feed([Reading(1010.0, "gate-south.open_cmd", False)])
    rp.feed([Reading(1011.0 + i, "gate-south.loop_occupied", v) for i, v in enumerate([False, True])])
    rp.finish()
    assert [(f["rule"], f["key"]) for f in rp.firings] == [
        ("gate-open-cmd-on-loop", "gate-south.loop_occupied")
    ]


# ---------------------------------------------------------------- the gate's behaviour over time
def test_a_vehicle_passes_when_the_arm_opens_and_the_arm_closes_by_itself() -> None:
    gate = GateModel(0.0, arrivals=(10.0, 10.0))
    gate.advance(9.9)
    assert not gate.loop_occupied and gate.barrier_closed
    gate.advance(10.0)
    assert gate.loop_occupied
    gate.advance(11.0)
    gate.open()  # what a rule or the technician does when the loop is occupied
    assert not gate.barrier_open and not gate.barrier_closed  # travelling
    gate.advance(11.0 + gate.travel)
    assert gate.barrier_open and gate.loop_occupied
    gate.advance(11.0 + gate.travel + gate.pass_time)
    assert not gate.loop_occupied and gate.count == 1
    assert gate.barrier_open  # stays up a few seconds after the loop clears
    closes_at = 11.0 + gate.travel + gate.pass_time + gate.close_delay
    gate.advance(closes_at - 0.01)
    assert gate.barrier_open
    gate.advance(closes_at + gate.travel)
    assert gate.barrier_closed and gate.count == 1


def test_a_vehicle_gives_up_when_nobody_opens() -> None:
    gate = GateModel(0.0, arrivals=(5.0, 5.0))
    gate.advance(5.0)
    assert gate.loop_occupied
    gate.advance(5.0 + gate.patience)
    assert not gate.loop_occupied and gate.count == 0 and gate.barrier_closed
    gate.advance(10_000.0)  # a long unobserved stretch is replayed, bounded
    assert gate.count == 0 and gate.barrier_closed


def test_opened_without_a_vehicle_closes_after_the_delay() -> None:
    gate = GateModel(0.0, arrivals=None)
    gate.advance(3.0)
    gate.open()
    gate.advance(3.0 + gate.travel + gate.close_delay + gate.travel)
    assert gate.barrier_closed


# ---------------------------------------------------------------- the site file
def test_moving_the_simulator_port_keeps_the_technicians_edits(tmp_path: Path) -> None:
    path = prepare(tmp_path, "127.0.0.1", 8080, sim_port=15020)
    text = path.read_text(encoding="utf-8").replace("site:\n", "site:  # my note\n", 1)
    path.write_text(text, encoding="utf-8")
    assert simulator_port(path) == 15020
    move_simulator_port(path, 15020, 40123)
    assert simulator_port(path) == 40123
    edited = path.read_text(encoding="utf-8")
    assert "# my note" in edited
    assert edited.replace("40123", "15020") == text
    doc = yaml.safe_load(edited)
    ports = {d["id"]: d["connection"]["port"] for d in doc["devices"] if d["driver"] == "modbus"}
    assert ports == {"meter-main": 40123, "gate-south": 40123}


# ---------------------------------------------------------------- `edge demo` in a subprocess
@contextlib.contextmanager
def edge_demo(data: Path) -> Iterator[int]:
    port = free_port()
    log = open(data.parent / f"{data.name}.log", "w+")  # a file, not a pipe nobody reads
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "demo", "--data-dir", str(data), "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    def healthy() -> bool:
        assert proc.poll() is None, f"edge demo exited {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                return bool(json.load(resp)["status"] == "ok")
        except OSError:
            return False

    try:
        until_sync(healthy, timeout=60, what="/healthz of the demo")
        yield port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        out = log.read()
        log.close()
    assert proc.returncode == 0, out[-3000:]


def _flowing(site: Path, devices: tuple[str, ...]) -> dict[str, Any] | None:
    stats = json.loads(edge_cli("buffer", "stats", "-c", str(site), "--json").stdout)
    flow = stats["devices"]
    return flow if all(flow.get(d, {}).get("recent_readings", 0) > 0 for d in devices) else None


def test_demo_serves_its_modbus_devices_on_a_free_port_when_its_port_is_taken(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        site = prepare(data, "127.0.0.1", 8080, sim_port=busy)  # as if an earlier demo had chosen it
        with edge_demo(data):
            moved = simulator_port(site)
            assert moved is not None and moved != busy
            flow: Any = until_sync(
                lambda: _flowing(site, SIM_DEVICES),
                timeout=30,
                what="readings from meter-main and gate-south",
            )
            assert flow["meter-main"]["recent_readings"] > 0 and flow["gate-south"]["recent_readings"] > 0
            tail = edge_cli("buffer", "tail", "-c", str(site), "-n", "2000", "--json").stdout.splitlines()
            voltages = [
                r["value"]
                for r in map(json.loads, tail)
                if r["type"] == "reading" and r["point"] == "meter-main.voltage_a" and r["quality"] == "good"
            ]
            assert voltages and all(200 <= x <= 250 for x in voltages)
    assert edge_cli("check", "-q", "-c", str(site)).returncode == 0


def test_a_site_file_from_an_older_demo_keeps_working(tmp_path: Path) -> None:
    data = tmp_path / "old-demo"
    site = prepare(data, "127.0.0.1", 8080)
    doc = yaml.safe_load(site.read_text(encoding="utf-8"))
    doc["devices"] = [d for d in doc["devices"] if d["id"] not in SIM_DEVICES]
    old = "# an older demo's site file\n" + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    site.write_text(old, encoding="utf-8")
    assert simulator_port(site) is None
    with edge_demo(data):
        until_sync(lambda: _flowing(site, ("meter-b1", "gate-north")), timeout=30, what="readings")
    assert site.read_text(encoding="utf-8") == old


def test_a_second_demo_on_the_same_folder_changes_nothing_of_the_first(tmp_path: Path) -> None:
    # the second finds the simulator's port taken by the first: before the site's lock it moved
    # the port in the first's site file, then was refused when its runtime started
    data = tmp_path / "demo"
    with edge_demo(data):
        files = {p: p.read_bytes() for p in data.iterdir() if p.suffix in (".yaml", ".token")}
        second = subprocess.run(
            [sys.executable, "-m", "edge.cli", "demo", "--data-dir", str(data), "--port", str(free_port())],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert {p: p.read_bytes() for p in data.iterdir() if p.suffix in (".yaml", ".token")} == files
        assert second.returncode == 1, second.stdout + second.stderr
        assert "is running this site" in second.stderr and "nothing was written" in second.stderr
