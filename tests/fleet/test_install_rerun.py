"""`deploy/install.sh --from BUNDLE` as a systemd install (SERVICE=systemd) run again and again on
one gateway: a file the operator gave the service user in /etc/community-edge stays that user's
(an upgrade chowned every file there to root), the site file is checked as the service will read
it (its user, its EnvironmentFile) before anything starts, and a site that names a token variable
the environment file does not set is not started (nor said to run).

This machine has no systemd as PID 1: each install runs in a private mount namespace whose /etc
and /usr/local/bin are scratch copies (the service user is made there, by install.sh's own
useradd), with a `systemctl` that does what community-edge.service does at a start:
StateDirectory=, Environment= (a drop-in's, from `unit-env`), EnvironmentFile=, then ExecStartPre (`edge check`) and ExecStart (`edge run`)
as User=, the gateway in the background with its pid in a file. Root only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fleet.conftest import ROOT, alive, stop_pid_file
from tests.support.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the session's bundle may be built first

SERVICE_USER = "community-edge"

# what community-edge.service does, for the commands install.sh runs; every call is logged
SYSTEMCTL = r"""#!/bin/sh
echo "systemctl $*" >> "$GW/systemctl.log"
PIDF=$GW/data/edge.pid
stop() {
  p=$(cat "$PIDF" 2>/dev/null) || return 0
  kill "$p" 2>/dev/null || return 0
  while [ -d /proc/$p ] && [ "$(cut -d" " -f3 /proc/$p/stat 2>/dev/null)" != Z ]; do sleep 0.1; done
}
start() {
  install -d -o community-edge -g community-edge -m 0750 "$GW/data"   # StateDirectory=
  env -i PATH=/usr/bin:/bin $(cat "$GW/unit-env" 2>/dev/null) PYTHONOPTIMIZE=2 PYTHONPYCACHEPREFIX="$PREFIX/.venv/pycache" sh -c '
    set -a; [ ! -f /etc/community-edge/env ] || . /etc/community-edge/env; set +a
    as="setpriv --reuid=community-edge --regid=community-edge --init-groups"
    $as "$0/.venv/bin/edge" check -q -c /etc/community-edge/site.yaml || { echo "ExecStartPre failed"; exit 1; }
    exec $as "$0/.venv/bin/edge" run -c /etc/community-edge/site.yaml' "$PREFIX" >> "$GW/data/run.log" 2>&1 &
  echo $! > "$PIDF"
}
case $1 in
  daemon-reload|enable) ;;
  stop) stop ;;
  start|restart) stop; start ;;
  is-active) p=$(cat "$PIDF" 2>/dev/null) && kill -0 "$p" 2>/dev/null || exit 3 ;;
  show) cat "$GW/unit-env" 2>/dev/null ;;  # -p Environment --value: the unit's Environment= (drop-ins)
esac
exit 0
"""


def service_python() -> str:
    """A Python of the bundle's version that the service user may run (a pyenv under /root is
    root's alone)."""
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (f"/usr/bin/python{want}", "/usr/bin/python3"):
        if Path(candidate).exists():
            done = subprocess.run(
                [candidate, "-c", "import sys, venv; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                capture_output=True,
                text=True,
            )
            if done.returncode == 0 and done.stdout.strip() == want:
                return candidate
    pytest.skip(f"no system Python {want} with venv for the service user to run")


class Box:
    """A gateway's host: scratch /etc (with /etc/community-edge) and /usr/local/bin, a prefix and
    a data folder the service user may reach, install.sh run in the mount namespace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc"  # the namespace's /etc
        self.conf = self.etc / "community-edge"  # /etc/community-edge inside it
        self.prefix = root / "opt"
        self.data = root / "data"
        self.pid_file = self.data / "edge.pid"
        self.port = free_port()
        subprocess.run(["cp", "-a", "/etc", str(self.etc)], check=True)
        (root / "ulb").mkdir()
        (root / "bin").mkdir()
        (root / "bin" / "systemctl").write_text(SYSTEMCTL)
        (root / "bin" / "systemctl").chmod(0o755)

    def ns(self, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`command` in a private mount namespace with the scratch /etc and /usr/local/bin."""
        script = (
            'mount --bind "$1/etc" /etc && mount --bind "$1/ulb" /usr/local/bin && '
            'PATH="$1/bin:$PATH" && shift && exec "$@"'
        )
        environ = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        environ.update(GW=str(self.root), PREFIX=str(self.prefix), **(env or {}))
        return subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(self.root), *command],
            env=environ,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def install(self, bundle: Path, health_timeout: int = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return self.ns(
            "sh",
            str(ROOT / "deploy" / "install.sh"),
            "--from",
            str(bundle),
            env={
                "SERVICE": "systemd",
                "EXTRAS": "modbus",
                "PYTHON": service_python(),
                "HEALTH_TIMEOUT": str(health_timeout),
                **env,
            },
        )

    def make_service_user(self) -> tuple[int, int]:
        """The service user, made by install.sh's own command; its uid and gid."""
        self.ns(
            "useradd",
            "--system",
            "--home-dir",
            "/var/lib/community-edge",
            "--shell",
            "/usr/sbin/nologin",
            SERVICE_USER,
        )
        for line in (self.etc / "passwd").read_text().splitlines():
            name, _, uid, gid, *_ = line.split(":")
            if name == SERVICE_USER:
                return int(uid), int(gid)
        raise AssertionError("useradd made no service user")

    def site(self, **more: object) -> None:
        doc = {
            "site": {"id": "rerun-site", "name": "rerun"},
            "storage": {"path": str(self.data / "edge.db")},
            "web": {"listen": f"127.0.0.1:{self.port}"},
            "clock": {"trust_unsynced": True},
            "devices": [
                {
                    "id": "m",
                    "driver": "sim",
                    "points": [{"name": "p", "signal": "random", "interval": "50ms"}],
                }
            ],
            **more,
        }
        self.conf.mkdir(exist_ok=True)
        (self.conf / "site.yaml").write_text(yaml.safe_dump(doc))

    def running(self) -> bool:
        return self.pid_file.exists() and alive(int(self.pid_file.read_text()))

    def starts(self) -> list[str]:
        log = self.root / "systemctl.log"
        calls = log.read_text().splitlines() if log.exists() else []
        return [c for c in calls if c.split()[1] in ("start", "restart")]


@pytest.fixture
def box() -> Iterator[Box]:
    if os.geteuid() != 0:
        pytest.skip("a systemd install (a service user, chown, setpriv) needs root")
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.skip("unshare and setpriv (util-linux) are needed")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"a private mount namespace is not permitted here: {probe.stderr.strip()}")
    root = Path(tempfile.mkdtemp(prefix="edge-install-", dir="/tmp"))
    root.chmod(0o755)  # the service user passes through to its prefix and data
    the_box = Box(root)
    try:
        yield the_box
    finally:
        stop_pid_file(the_box.pid_file)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def upgrade(upgrade_bundle: Path) -> Path:
    """The session's bundle as version 0.2.0."""
    return upgrade_bundle


def test_an_upgrade_leaves_the_operators_files_in_etc_as_they_were(
    box: Box, bundle: Path, upgrade: Path
) -> None:
    uid, _ = box.make_service_user()
    box.site()
    first = box.install(bundle)
    assert first.returncode == 0 and "answers healthy" in first.stdout, first.stdout + first.stderr

    # the operator seals the site's personal data: a master key, given to the service user as
    # `edge doctor` says, and a file of their own
    key = box.conf / "master.key"
    made = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "edge"), "privacy", "new-key", str(key)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    os.chown(key, uid, 0)
    key.chmod(0o600)
    box.site(privacy={"master_key_file": "/etc/community-edge/master.key"})
    (box.conf / "notes.txt").write_text("the operator's")

    again = box.install(upgrade)
    assert again.returncode == 0 and "answers healthy" in again.stdout, again.stdout + again.stderr
    assert box.running()
    st = key.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o600)
    assert (box.conf / "notes.txt").stat().st_gid == 0
    etc = box.conf.stat()
    assert (etc.st_uid, etc.st_mode & 0o777) == (0, 0o750)


def test_the_site_is_checked_as_the_service_user_before_the_start(box: Box, bundle: Path) -> None:
    box.make_service_user()
    key = box.conf / "master.key"
    box.site(privacy={"master_key_file": "/etc/community-edge/master.key"})
    made = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "edge"), "privacy", "new-key", str(key)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    key.chmod(0o600)  # root's: root's check passes, the service's does not

    done = box.install(bundle, health_timeout=10)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Permission denied" in done.stderr and str(Path("/etc/community-edge/master.key")) in done.stderr
    assert "then start the service" in done.stderr
    assert box.starts() == [] and not box.running()


def test_a_token_variable_the_env_file_does_not_set_keeps_the_service_stopped(
    box: Box, bundle: Path, upgrade: Path
) -> None:
    # the first install writes the example site, which names token_env: EDGE_CENTRAL_TOKEN, and an
    # env file of a comment only
    first = box.install(bundle, health_timeout=10)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wrote /etc/community-edge/site.yaml" in first.stdout
    assert "EDGE_CENTRAL_TOKEN is not set here" in first.stderr
    assert "set them in /etc/community-edge/env (NAME=value, one a line)" in first.stderr
    assert box.starts() == [] and not box.running()
    assert "answers healthy" not in first.stdout

    # a site of the operator's with its token in the env file (and not in the installer's
    # environment): checked with it, started, healthy
    box.site(consumers=[{"id": "city", "token_env": "EDGE_PULL_TOKEN"}])
    (box.conf / "env").write_text("EDGE_PULL_TOKEN=" + "t" * 40 + "\n")
    second = box.install(upgrade)
    assert second.returncode == 0 and "answers healthy" in second.stdout, second.stdout + second.stderr
    assert box.running()


def test_a_token_the_unit_sets_by_a_drop_in_is_one_the_check_sees(box: Box, bundle: Path) -> None:
    """`edge check` runs with the unit's own Environment= (a drop-in's, as `systemctl show` gives
    it) as well as its EnvironmentFile: a token set there was refused as unset, which stopped the
    upgrade of a site that ran."""
    box.make_service_user()
    box.site(consumers=[{"id": "city", "token_env": "EDGE_PULL_TOKEN"}])
    box.conf.mkdir(exist_ok=True)
    (box.conf / "env").write_text("# the token comes from the unit\n")
    (box.root / "unit-env").write_text("EDGE_PULL_TOKEN=" + "u" * 40 + "\n")
    done = box.install(bundle)
    assert done.returncode == 0 and "answers healthy" in done.stdout, done.stdout + done.stderr
    assert "is not set here" not in done.stderr
    assert box.running()
