"""What `edge run` loads for a minimal site (one simulated device, no upstream, the web UI): no
library the site does not use. Each of these costs resident memory on a small gateway box for as
long as it runs (prometheus_client about 12 MB, pymodbus 11, cryptography 7, argon2 2.5): they
are imported when a feature needs them (a scrape, a login, a sealed record, a Modbus device), not
at start."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge.cli import build_parser
from tests.support.cli import edge_cli
from tests.support.ports import free_port
from tests.support.procs import stop_process, terminate
from tests.support.site import site_file
from tests.support.waiting import until_sync

ROOT = Path(__file__).resolve().parents[2]

# `edge run` as the console script runs it, writing the loaded modules' names at exit
RUN = """
import atexit, sys
out = sys.argv[2]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from edge.cli import main
sys.exit(main(["run", "-c", sys.argv[1], "--log-level", "warning"]))
"""

#: top-level packages a minimal site must not import (protocol libraries, the metrics library, the
#: password hasher, the encryption library, the rule editor's YAML, browsers, message brokers)
NOT_LOADED = (
    "pymodbus",
    "serial",
    "bleak",
    "cv2",
    "numpy",
    "prometheus_client",
    "argon2",
    "cryptography",
    "playwright",
    "aiomqtt",
    "paho",
)


#: modules of features a minimal site does not use (the Modbus server, the rules' dry-run child),
#: the distribution metadata library (the plugins are found without it) and the close-match
#: finder of typo hints, the code of the KPIs the site does not compute (even when its KPI API is
#: asked: it answers 404), and the code that seals and opens records and answers for residents'
#: records, for a site without privacy keys; of the demo, its manifest alone
NOT_LOADED_MODULES = (
    "drivers.modbus.server",
    "rules.dry_run_worker",
    "importlib.metadata",
    "zipfile",
    "difflib",
    "edge.kpi.component",
    "edge.kpi.engine",
    "edge.kpi.figures",
    "edge.kpi.store",
    "csv",
    "edge.privacy.atrest",
    "edge.privacy.component",
    "edge.privacy.report",
    "edge.privacy.subjects",
    "edge.demo.site",
    "edge.demo.kiosk",
)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The modules a minimal site's `edge run` had loaded when it stopped (one run for the module)."""
    tmp_path = tmp_path_factory.mktemp("minimal-site")
    port = free_port()
    config = site_file(
        tmp_path,
        {
            "web": {"listen": f"127.0.0.1:{port}"},
            "devices": [
                {"id": "m", "driver": "sim", "points": [{"name": "p", "signal": "sine", "interval": "50ms"}]}
            ],
        },
    )
    made = edge_cli("tokens", "create", "-c", str(config), "reader")
    assert made.returncode == 0, made.stderr
    token = made.stdout.split()[0]
    modules = tmp_path / "modules.txt"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, str(config), str(modules)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    return bool(json.load(resp)["status"] == "ok")
            except OSError:
                return False

        until_sync(healthy, timeout=60, what="/healthz of the minimal site")
        # the UI's first page and a status read, as a browser left open does
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200
        kpi = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/kpi", headers={"Authorization": f"Bearer {token}"}
        )
        with pytest.raises(urllib.error.HTTPError) as off:
            urllib.request.urlopen(kpi, timeout=5)
        assert off.value.code == 404 and "KPIs are off" in off.value.read().decode()
        output = terminate(proc)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, output
    return set(modules.read_text().split())


def test_a_minimal_site_loads_no_library_it_does_not_use(loaded: set[str]) -> None:
    top = {name.split(".")[0] for name in loaded}
    assert "aiohttp" in top and "edge" in top  # the run really got that far
    assert sorted(top & set(NOT_LOADED)) == []
    assert "rules.component" in loaded and "drivers.modbus.plugin" in loaded
    assert sorted(loaded & set(NOT_LOADED_MODULES)) == []


def command_modules() -> set[str]:
    """The modules that hold the functions of every `edge` command, core or plugin."""
    out = set()
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        func = parser.get_default("func")
        if func is not None:
            out.add(func.__module__)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return out


def test_edge_run_loads_no_other_command(loaded: set[str]) -> None:
    """`edge run` is the service: every other command's module would stay in its memory."""
    run = build_parser().parse_args(["run", "-c", "site.yaml"]).func.__module__
    others = command_modules() - {run, "edge.cli"}
    assert {"edge.doctor", "edge.status_cli", "rules.cli", "edge.demo.cli"} <= others
    assert run in loaded
    assert sorted(loaded & others) == []
