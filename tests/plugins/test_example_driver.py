"""A driver shipped as a package of its own (tests/plugins/example_driver): pip installs it into a
directory of its own, and `edge check`, `edge run` and `edge buffer tail` started with that
directory on PYTHONPATH find `driver: example` through the package's `community_edge.plugins`
entry point and journal its counters; without the package the same site is refused as naming an
unknown driver. Nothing in the core names the example: installing it is the whole change. A package
that declares a driver name the core already declares is refused rather than let in.

The example builds with its own stdlib-only PEP 517 backend (example_driver/build_backend.py):
pip then needs neither the network nor the `wheel` distribution setuptools 65 would ask for."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.helpers import line_of, python_env
from tests.support.cli import edge_cli, start_edge_run
from tests.support.procs import stop_process, terminate
from tests.support.site import site_file
from tests.support.waiting import until_sync

EXAMPLE = Path(__file__).resolve().parent / "example_driver"
SITE = """
devices:
  - id: ex
    driver: example
    interval_ms: 20
    points:
      - {name: count, start: 10, step: 5}
"""


def pip_install(source: Path, target: Path) -> Path:
    """Install the package at `source` into `target` with pip, offline (--no-index)."""
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"),
            *("--target", str(target), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        # the build imports the package's backend from the source tree: leave no bytecode there
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package installed into a directory of its own."""
    target = pip_install(EXAMPLE, tmp_path_factory.mktemp("example-driver"))
    assert (target / "edge_example_driver" / "plugin.py").is_file()
    return target


def test_the_installed_package_is_what_makes_the_driver_known(tmp_path: Path, installed: Path) -> None:
    config = site_file(tmp_path, SITE)
    line = line_of(config, "driver: example")

    without = edge_cli("check", "-c", str(config))
    assert without.returncode == 1
    assert f"{config}:{line}: devices[0].driver: unknown driver 'example'" in without.stderr
    assert "Traceback" not in without.stderr

    found = edge_cli("check", "-c", str(config), env=python_env(installed))
    assert found.returncode == 0, found.stderr
    assert "1 device, 1 point" in found.stdout


def test_the_installed_driver_is_checked_by_its_own_model(tmp_path: Path, installed: Path) -> None:
    """The device model of the package validates the entry, with the located message of the core."""
    config = site_file(tmp_path, SITE.replace("interval_ms: 20", "interval_ms: 5"))
    done = edge_cli("check", "-c", str(config), env=python_env(installed))
    assert done.returncode == 1
    line = line_of(config, "interval_ms: 5")
    assert (
        f"{config}:{line}: devices[0].interval_ms: Input should be greater than or equal to 10" in done.stderr
    )


def _readings(config: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    done = edge_cli("buffer", "tail", "-c", str(config), "--json", "-n", "100000", env=env)
    if done.returncode != 0:  # no journal yet
        return []
    records = [json.loads(line) for line in done.stdout.splitlines()]
    return [r for r in records if r["type"] == "reading" and r["point"] == "ex.count"]


def test_edge_run_journals_the_counters_of_the_installed_driver(tmp_path: Path, installed: Path) -> None:
    config = site_file(tmp_path, SITE)
    env = python_env(installed)
    log = tmp_path / "edge.log"
    proc = start_edge_run(config, log, env=env)
    try:

        def five_readings() -> list[dict[str, Any]]:
            if proc.poll() is not None:
                raise AssertionError(f"edge run exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            found = _readings(config, env)
            return found if len(found) >= 5 else []

        readings = until_sync(five_readings, timeout=90, interval=0.2, what="5 readings of ex.count")
        terminate(proc)
        assert proc.returncode == 0, log.read_text()[-3000:]
    finally:
        stop_process(proc)
    values = [r["value"] for r in readings]
    assert values == list(range(10, 10 + 5 * len(values), 5))  # start 10, step 5, none lost
    assert {r["quality"] for r in readings} == {"good"}


def test_a_package_cannot_take_over_a_driver_name_the_core_declares(tmp_path: Path) -> None:
    """A package whose manifest declares `sim` too is refused by every command, naming both
    plugins: `driver: sim` never silently runs someone else's code."""
    source = tmp_path / "clash"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = source / "edge_example_driver" / "plugin.py"
    text = manifest.read_text(encoding="utf-8")
    assert 'drivers={"example":' in text
    manifest.write_text(text.replace('drivers={"example":', 'drivers={"sim":'), encoding="utf-8")
    target = pip_install(source, tmp_path / "target")
    config = site_file(tmp_path, {"devices": [{"id": "meter", "driver": "sim"}]})

    assert edge_cli("check", "-c", str(config)).returncode == 0
    done = edge_cli("check", "-c", str(config), env=python_env(target))
    assert done.returncode == 2
    assert re.search(r"plugins '(example|sim)' and '(example|sim)' both declare driver 'sim'", done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
