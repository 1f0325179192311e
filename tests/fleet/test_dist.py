"""`make dist`'s bundle installs with no network: `deploy/install.sh --from BUNDLE` in a network
namespace whose only interface is loopback installs into a prefix of its own, starts `edge run`
from it and passes the health gate; the same bundle again changes nothing; an upgrade to a build
that fails the health gate is rolled back to the previous version and the backup of its data."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fleet.conftest import ROOT, START_CMD, STOP_CMD, alive, repack, stop_pid_file
from tests.support.ports import free_port
from tests.support.waiting import until_sync


class Gateway:
    """A gateway's prefix, site file and data directory under tmp_path, and install.sh run on it."""

    site_id = "offline-site"
    interval = "20ms"

    def __init__(self, tmp_path: Path, offline: list[str]) -> None:
        self.prefix, self.etc, self.data = tmp_path / "opt", tmp_path / "etc", tmp_path / "data"
        self.etc.mkdir()
        self.data.mkdir()
        self.offline = offline
        self.port = free_port()
        self.site(self.data / "edge.db")
        self.pid_file = self.data / "edge.pid"

    def site(self, journal: Path) -> None:
        """Write the site file with its journal at `journal`."""
        site = {
            "site": {"id": self.site_id, "name": self.site_id},
            "storage": {"path": str(journal)},
            "web": {"listen": f"127.0.0.1:{self.port}"},
            "devices": [
                {
                    "id": "meter",
                    "driver": "sim",
                    "points": [
                        {"name": "p", "signal": "random", "min": 0, "max": 9, "interval": self.interval}
                    ],
                }
            ],
        }
        (self.etc / "site.yaml").write_text(yaml.safe_dump(site))

    def install(
        self, bundle: Path, health_timeout: int = 60, **settings: str
    ) -> subprocess.CompletedProcess[str]:
        """install.sh --from `bundle`, with `settings` (KEEP_BACKUPS, ALLOW_DOWNGRADE, ...) in its
        environment and none of them inherited from this one."""
        fmt = {"prefix": self.prefix, "etc": self.etc, "data": self.data}
        env = dict(
            os.environ,
            PREFIX=str(self.prefix),
            ETC=str(self.etc),
            SERVICE="none",
            EXTRAS="modbus",
            PYTHON=sys._base_executable,  # type: ignore[attr-defined]
            START_CMD=START_CMD.format(**fmt),
            STOP_CMD=STOP_CMD.format(**fmt),
            HEALTH_TIMEOUT=str(health_timeout),
            **settings,
        )
        for name in (
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "KEEP_BACKUPS",
            "ALLOW_DOWNGRADE",
        ):
            if name not in settings:
                env.pop(name, None)
        return subprocess.run(
            [*self.offline, "sh", str(ROOT / "deploy" / "install.sh"), "--from", str(bundle)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def inside(self, code: str) -> Any:
        """Run Python `code` (which prints JSON) in the namespace, with the installed interpreter."""
        done = subprocess.run(
            [*self.offline, str(self.prefix / ".venv" / "bin" / "python"), "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def healthz(self) -> Any:
        return self.inside(
            "import json, urllib.request;"
            f"print(urllib.request.urlopen('http://127.0.0.1:{self.port}/healthz', timeout=10).read().decode())"
        )

    def current(self) -> str:
        return os.readlink(self.prefix / "current")


def last_seq(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0])
    finally:
        conn.close()


def broken_copy(bundle: Path, out: Path) -> Path:
    """The bundle with its project wheel's Runtime.start made to fail (SHA256SUMS made to match)."""
    return repack(bundle, out, None, broken=True)


@pytest.mark.timeout(900)  # the bundle is built first (the registry, ~40 s on a quiet machine)
def test_the_bundle_holds_the_installer_and_a_wheel_per_dependency(bundle: Path) -> None:
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        (top,) = {n.split("/")[0] for n in names}
        text = tar.extractfile(f"{top}/BUNDLE").read().decode()  # type: ignore[union-attr]
        info = dict(line.partition("=")[::2] for line in text.split())
        installer = tar.extractfile(f"{top}/install.sh").read()  # type: ignore[union-attr]
    assert installer == (ROOT / "deploy" / "install.sh").read_bytes()
    wheels = {n.split("/")[-1].split("-")[0].lower() for n in names if n.endswith(".whl")}
    # the core's dependencies and every driver extra's, as wheels (nothing to build on the gateway)
    assert {
        "community_edge",
        "aiohttp",
        "pydantic",
        "pydantic_core",
        "pyyaml",
        "cryptography",
        "pymodbus",
    } <= wheels
    assert {"bleak", "opencv_python_headless", "aiomqtt"} <= wheels
    assert not [n for n in names if n.endswith((".tar.gz", ".zip"))]
    assert (
        info["arch"] == os.uname().machine
        and info["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    )


# What a gateway imports (the command line, a site's check, the runtime, the web server and API,
# the Modbus driver), under the unit's settings, writing no bytecode: each module's cached file,
# as the import system looks it up then, must be there (install.sh compiled it).
IMPORTS_COMPILED = """
import importlib, json, os, sys
from edge.cli import main
assert main(["check", "-q", "-c", sys.argv[1]]) == 0
for name in ("edge.service", "edge.runtime", "edge.api.app", "edge.web", "drivers.modbus.driver", "aiohttp.web"):
    importlib.import_module(name)
cached = [m.__cached__ for m in list(sys.modules.values()) if getattr(m, "__cached__", None)]
import sysconfig
site = sysconfig.get_paths()["purelib"]
print(json.dumps({"missing": [c for c in cached if not os.path.exists(c)], "cached": cached, "site": site}))
"""


def assert_bytecode_compiled(gw: Gateway) -> None:
    """Every module a gateway imports has its optimised bytecode in the venv's cache, where the
    unit's service (PYTHONOPTIMIZE=2, PYTHONPYCACHEPREFIX, ProtectSystem=strict) only reads it."""
    cache = gw.prefix / ".venv" / "pycache"
    env = dict(
        os.environ,
        PYTHONOPTIMIZE="2",
        PYTHONPYCACHEPREFIX=str(cache),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("PYTHONPATH", None)
    # the interpreter `edge` runs with: its venv as the service finds its modules (the version's own
    # path, not the .venv link's)
    shebang = (gw.prefix / ".venv" / "bin" / "edge").read_text().splitlines()[0]
    python = shebang.removeprefix("#!").strip()
    done = subprocess.run(
        [python, "-c", IMPORTS_COMPILED, str(gw.etc / "site.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=gw.data,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(found["cached"]) > 300  # the standard library's and the venv's, not a handful
    assert all(c.startswith(str(cache)) and c.endswith(".opt-2.pyc") for c in found["cached"])
    assert found["missing"] == [], f"{len(found['missing'])} modules not compiled: {found['missing'][:10]}"
    # and nothing of packages the venv does not use (the base interpreter's own site-packages)
    venv_site = str(cache) + found["site"]
    stray = [p for p in map(str, cache.rglob("*.pyc")) if "-packages/" in p and not p.startswith(venv_site)]
    assert stray == [], f"{len(stray)} files compiled outside the venv's packages: {stray[:5]}"


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the bundle, two installs and a health gate left to time out
def test_install_offline_upgrade_and_rollback(
    bundle: Path, offline: list[str], tmp_path: Path, pid_files: list[Path]
) -> None:
    gw = Gateway(tmp_path, offline)
    pid_files.append(gw.pid_file)
    # the namespace really has no way out
    refused = subprocess.run(
        [
            *offline,
            sys.executable,
            "-c",
            "import socket; socket.create_connection(('151.101.0.223', 443), timeout=5)",
        ],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "unreachable" in refused.stderr

    first = gw.install(bundle)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "answers healthy" in first.stdout
    health = gw.healthz()
    assert health["site"] == "offline-site" and health["status"] == "ok"
    first_version = gw.current()
    assert first_version.startswith("versions/0.") and (gw.prefix / ".venv").resolve() == (
        gw.prefix / first_version / "venv"
    )
    pid = int(gw.pid_file.read_text())
    assert (
        Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1]
        == str(gw.prefix / ".venv/bin/edge").encode()
    )
    assert b"PYTHONOPTIMIZE=2" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert_bytecode_compiled(gw)

    again = gw.install(bundle)
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr
    assert int(gw.pid_file.read_text()) == pid and alive(pid)  # not even restarted

    until_sync(lambda: last_seq(gw.data / "edge.db") > 200, timeout=60, what="the gateway ingesting")
    before = last_seq(gw.data / "edge.db")
    # the broken build's gate waits all of it; the rolled-back version answers in 1-2 s
    upgrade = gw.install(broken_copy(bundle, tmp_path / "broken.tar.gz"), health_timeout=10)
    assert upgrade.returncode == 1, upgrade.stdout + upgrade.stderr
    assert f"rolled back to {first_version}" in upgrade.stderr and "it answers healthy" in upgrade.stderr
    assert gw.current() == first_version
    assert (gw.prefix / "backups").stat().st_mode & 0o077 == 0
    (backup,) = (gw.prefix / "backups").glob("before-*.tar.gz")
    assert (gw.data / "edge.db.pre-restore").exists()  # the failed version's data, kept aside
    restored_pid = int(gw.pid_file.read_text())
    assert restored_pid != pid and alive(
        restored_pid
    )  # the broken build cannot run: this is the previous one
    assert gw.healthz()["status"] == "ok"
    stop_pid_file(gw.pid_file)
    conn = sqlite3.connect(gw.data / "edge.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT max(seq) FROM journal").fetchone()[0] >= before
    finally:
        conn.close()
    assert backup.stat().st_mode & 0o077 == 0
