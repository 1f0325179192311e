"""The Modbus, BLE and camera libraries are extras: a site that needs a missing one is refused by
`edge check` with one located line naming the extra to install, and a site that needs none of them
runs without them.

How absence is simulated: the `edge` process starts with tests/plugins/without/ on PYTHONPATH and
the modules named in $EDGE_TEST_WITHOUT; its sitecustomize.py maps each of them to None in
sys.modules before any other code runs, so importing one fails and importlib.util.find_spec
answers None, as in an installation without the extra. (A second venv without the extras would
need the network to build.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from edge.plugins import registry
from tests.plugins.helpers import line_of, python_env
from tests.support.cli import ROOT, answering, edge_cli, start_edge_run
from tests.support.ports import free_port
from tests.support.procs import stop_process, terminate
from tests.support.site import site_file
from tests.support.waiting import until_async
from tests.sync.helpers import Receiver

MODBUS_DEVICE = """
devices:
  - id: meter
    driver: modbus
    connection: {transport: tcp, host: 127.0.0.1, port: 1502}
    points:
      - {name: power, address: 0}
"""
CAMERA_DEVICE = """
devices:
  - id: gate-cam
    driver: camera
    url: rtsp://127.0.0.1:8554/gate
"""
BLE_DEVICE = """
devices:
  - id: room-1
    driver: ble
    address: "A4:C1:38:00:00:01"
"""
PROFILE_DEVICE = """
devices:
  - id: meter-b1
    profile: chint-dtsu666            # the profile names the driver: modbus
    connection: {transport: tcp, host: 127.0.0.1, port: 1502}
"""
MODBUS_SERVER = """
modbus_server:
  listen: 127.0.0.1:1502
"""

# (site, modules made absent, the text of the located line, where the problem is, the extra)
CASES = {
    "modbus device without pymodbus": (
        MODBUS_DEVICE,
        ["pymodbus"],
        "driver: modbus",
        "devices[0].driver",
        "modbus",
    ),
    "modbus device without pyserial": (
        MODBUS_DEVICE,
        ["serial"],
        "driver: modbus",
        "devices[0].driver",
        "modbus",
    ),
    "modbus profile without pymodbus": (
        PROFILE_DEVICE,
        ["pymodbus"],
        "profile: chint-dtsu666",
        "devices[0].profile",
        "modbus",
    ),
    "camera device without cv2": (CAMERA_DEVICE, ["cv2"], "driver: camera", "devices[0].driver", "camera"),
    "ble device without bleak": (BLE_DEVICE, ["bleak"], "driver: ble", "devices[0].driver", "ble"),
    "modbus_server without pymodbus": (
        MODBUS_SERVER,
        ["pymodbus"],
        "modbus_server:",
        "modbus_server",
        "modbus",
    ),
}


@pytest.mark.parametrize(("site", "without", "text", "where", "extra"), CASES.values(), ids=CASES.keys())
def test_check_names_the_extra_a_site_needs_at_the_key_that_needs_it(
    tmp_path: Path, site: str, without: list[str], text: str, where: str, extra: str
) -> None:
    config = site_file(tmp_path, site)
    # the site itself is valid: with the library installed it passes
    whole = edge_cli("check", "-c", str(config))
    assert whole.returncode == 0, whole.stderr

    done = edge_cli("check", "-c", str(config), env=python_env(without=without))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[1:] == [f"{config}: 1 problem"], done.stderr  # one line per problem, nothing else
    problem = lines[0]
    assert problem.startswith(f"{config}:{line_of(config, text)}: {where}: "), problem
    assert without[0] in problem  # the module that is missing
    assert problem.endswith(f"pip install 'community-edge[{extra}]'"), problem


def test_a_command_of_a_plugin_without_its_library_names_the_extra() -> None:
    """`edge modbus probe` stays listed without pymodbus, and running it says what to install
    instead of failing with a traceback inside the probe."""
    env = python_env(without=["pymodbus"])
    assert "modbus" in edge_cli("--help", env=env).stdout
    done = edge_cli("modbus", "probe", "--host", "127.0.0.1", "--port", "1", env=env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("edge modbus: the modbus plugin needs the Python modules pymodbus")
    assert done.stderr.strip().endswith("pip install 'community-edge[modbus]'")


CORE_SITE = """
devices:
  - id: meter
    driver: sim
    points:
      - {name: power, signal: ramp, min: 0, max: 100, period: 1h, interval: 20ms}
rules:
  packs: [PACK]
"""
PACK = """
rules:
  - id: power-seen
    name: Power seen
    when: meter.power
    if: value >= 0
    then:
      - event: {kind: power_seen, message: "power {value:.0f}"}
"""
#: the extras' libraries and what they bring with them (pymodbus needs nothing more)
EXTRA_MODULES = ["pymodbus", "serial", "bleak", "dbus_fast", "cv2", "numpy", "aiomqtt", "paho"]


def _importable(env: dict[str, str] | None = None) -> list[str]:
    """The modules of EXTRA_MODULES a Python process started with `env` can import."""
    probe = "import importlib.util, sys; print(*[m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    done = subprocess.run(
        [sys.executable, "-c", probe, *EXTRA_MODULES], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_hidden_modules_are_absent_in_the_child() -> None:
    """The simulation itself: the extras' modules are installed here (make installs .[all,test]),
    and absent from a process started with python_env(without=...)."""
    assert _importable() == EXTRA_MODULES, "the test venv lacks an extra: make installs .[all,test]"
    assert _importable(python_env(without=EXTRA_MODULES)) == []


async def test_a_site_of_the_core_runs_without_any_extra(tmp_path: Path) -> None:
    (tmp_path / "pack.yaml").write_text(PACK, encoding="utf-8")
    rx = Receiver()
    doc: dict[str, Any] = yaml.safe_load(CORE_SITE.replace("PACK", str(tmp_path / "pack.yaml")))
    port = free_port()
    doc["web"] = {"listen": f"127.0.0.1:{port}"}
    doc["upstream"] = [{"id": "central", "type": "http", "url": rx.url, "batch": {"max_age": "100ms"}}]
    config = site_file(tmp_path, doc)
    env = python_env(without=EXTRA_MODULES)
    check = edge_cli("check", "-c", str(config), env=env)
    assert check.returncode == 0, check.stderr

    log = tmp_path / "edge.log"
    proc = start_edge_run(config, log, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        await answering(base, proc)
        assert proc.poll() is None, log.read_text()[-3000:]
        async with aiohttp.ClientSession() as http, http.get(base + "/") as page:
            # the web UI: its first page (setup, no account yet) is served
            assert page.status == 200 and page.content_type == "text/html"
            assert page.url.path == "/setup"

        async def delivered() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            points = {p for e in await rx.accepted() for p in e.get("points", [])}
            return "meter.power" in points

        await until_async(delivered, timeout=60, what="meter.power delivered upstream")
        terminate(proc)
        assert proc.returncode == 0, log.read_text()[-3000:]
    finally:
        stop_process(proc)
        rx.stop()

    tail = edge_cli("buffer", "tail", "-c", str(config), "--json", "-n", "1000", env=env)
    assert tail.returncode == 0, tail.stderr
    records = [json.loads(line) for line in tail.stdout.splitlines()]
    assert any(r["type"] == "reading" and r["point"] == "meter.power" for r in records)
    assert any(r["type"] == "event" and r["kind"] == "power_seen" for r in records)  # the rules engine
    assert "Traceback" not in log.read_text()


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", spec, maxsplit=1)[0].lower()


def test_the_core_dependencies_hold_no_driver_library_and_all_holds_every_extra() -> None:
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    core = {_requirement_name(d) for d in project["dependencies"]}
    assert not core & {"pymodbus", "pyserial", "bleak"}
    assert not [name for name in core if name.startswith("opencv")]

    extras = project["optional-dependencies"]
    assert {_requirement_name(d) for d in extras["modbus"]} >= {"pymodbus", "pyserial"}
    assert "bleak" in {_requirement_name(d) for d in extras["ble"]}
    assert any(_requirement_name(d).startswith("opencv") for d in extras["camera"])
    named = set()
    for spec in extras["all"]:
        assert _requirement_name(spec) == project["name"], spec
        named |= {e.strip() for e in spec.split("[", 1)[1].split("]", 1)[0].split(",")}
    assert named >= {"modbus", "ble", "camera"}
    # every plugin that needs more than the core names an extra that exists
    for plugin in registry().plugins:
        if plugin.requires:
            assert (plugin.extra or plugin.name) in extras, plugin.name
