"""The systemd unit: systemd's own checker accepts it, and its hardening stays at 'OK' exposure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "community-edge.service"


def _unit_for_this_checkout(tmp_path: Path) -> Path:
    # The unit names the installed paths; point them at this checkout's `edge` so that
    # systemd-analyze can check the executables exist.
    edge = Path(sys.executable).with_name("edge")
    text = UNIT.read_text().replace("/opt/community-edge/.venv/bin/edge", str(edge))
    out = tmp_path / UNIT.name
    out.write_text(text)
    return out


def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    unit = _unit_for_this_checkout(tmp_path)
    proc = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even on some warnings: what it prints is the verdict
    noise = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 0 and not noise, noise


def test_unit_hardening_exposure_is_ok(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    unit = _unit_for_this_checkout(tmp_path)
    proc = subprocess.run(
        [tool, "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", proc.stdout + proc.stderr)
    assert m, proc.stdout[-2000:] + proc.stderr[-2000:]
    score, verdict = float(m.group(1)), m.group(2)
    assert verdict == "OK" and score < 4.0, f"exposure {score} {verdict}"


def test_unit_runs_the_notify_protocol_the_runtime_speaks() -> None:
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert re.search(r"ExecStart=\S+/edge run -c \S+", text)


def test_install_creates_every_group_the_unit_needs(tmp_path: Path) -> None:
    """systemd refuses to start a unit whose SupplementaryGroups names a missing group (bluetooth
    exists only where BlueZ is installed): install.sh creates each one. Run against a fake getent
    and groupadd that record what the script asks for."""
    groups = [
        g
        for line in UNIT.read_text().splitlines()
        if line.startswith("SupplementaryGroups=")
        for g in line.split("=", 1)[1].split()
    ]
    assert "bluetooth" in groups and "dialout" in groups
    script = (ROOT / "deploy" / "install.sh").read_text()
    loop = next(line for line in script.splitlines() if line.startswith("for group in"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "groupadd.log"
    (bin_dir / "getent").write_text("#!/bin/sh\nexit 2\n")  # no group exists yet
    (bin_dir / "groupadd").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    for tool in ("getent", "groupadd"):
        (bin_dir / tool).chmod(0o755)
    subprocess.run(["sh", "-c", loop], env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, check=True, timeout=30)
    created = {line.split()[-1] for line in log.read_text().splitlines()}
    assert set(groups) <= created


def test_unit_gives_the_web_server_room_for_its_connection_cap() -> None:
    """The web server's total connection cap is a share of the soft fd limit it starts with: the
    unit must raise systemd's default (1024) so the cap reaches its maximum with the reserve left."""
    from edge.api.limits import FD_RESERVE_MIN, MAX_CONNECTIONS, connection_budget

    m = re.search(r"^LimitNOFILE=(\d+)$", UNIT.read_text(), re.M)
    assert m, "the unit sets no LimitNOFILE"
    limit = int(m.group(1))
    assert connection_budget(limit) == MAX_CONNECTIONS
    assert limit - MAX_CONNECTIONS >= FD_RESERVE_MIN
    assert connection_budget(1024) < 1024 - FD_RESERVE_MIN + 1  # the default leaves the reserve too


def test_unit_runs_optimised_bytecode_from_the_venvs_cache_that_install_compiles() -> None:
    """The service reads docstring-free bytecode from a cache inside the venv it runs (2.2 MB less
    resident); install.sh compiles it there for every install path (tests/fleet/test_dist.py
    checks an installed gateway's imports are all in it)."""
    text = UNIT.read_text()
    start = re.search(r"^ExecStart=(\S+)/bin/edge run", text, re.M)
    assert start, "no ExecStart running the venv's edge"
    venv = start.group(1)
    assert re.search(r"^Environment=PYTHONOPTIMIZE=2$", text, re.M)
    assert re.search(rf"^Environment=PYTHONPYCACHEPREFIX={re.escape(venv)}/pycache$", text, re.M)
    script = (ROOT / "deploy" / "install.sh").read_text()
    assert 'PYTHONPYCACHEPREFIX="$1/pycache"' in script and "-m compileall" in script and "-o 2" in script
    assert script.count('bytecode "$PREFIX/.venv"') == 1 and script.count('bytecode "$NEW/venv"') == 1
