"""The fleet tests' shared pieces: the offline bundle (built once per test run, shared by the
xdist workers: it takes the registry and ~20 s) and its copy as version 0.2.0, a network namespace
with no network, and gateways started by shell commands the way install.sh and the Ansible role
start them where there is no systemd."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.waiting import until_sync

ROOT = Path(__file__).resolve().parents[2]


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """What `build(folder)` makes, made once per test run: under xdist each worker is a session of
    its own, so the first to ask builds it into the run's folder they share (under a lock) and the
    others take it from there. A build that fails leaves nothing: the next to ask builds again."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    done = shared / f"{name}.built"
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if done.exists():
            return Path(done.read_text())
        folder = shared / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        made = build(folder)
        done.write_text(str(made))
        return made


def make_dist(out: Path) -> Path:
    """`scripts/make-dist.sh` (what `make dist` runs) for this Python and architecture, into `out`."""
    env = dict(os.environ, DIST=str(out), PYTHON=str(ROOT / ".venv" / "bin" / "python"))
    done = subprocess.run(
        ["sh", str(ROOT / "scripts" / "make-dist.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (made,) = out.glob("community-edge-*.tar.gz")
    return made


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline bundle of this checkout (0.1.0), for this Python and architecture. Read only:
    the tests that need another copy repack it."""
    return built_once(tmp_path_factory, "dist", make_dist)


BROKEN = b"""

async def _does_not_start(self, *args, **kwargs):  # a build that fails its health gate
    raise RuntimeError("this build cannot start")


Runtime.start = _does_not_start
"""


def repack(bundle: Path, out: Path, version: str | None, broken: bool = False) -> Path:
    """`bundle` as version `version` (its BUNDLE file; None: its own), its project wheel's
    Runtime.start made to fail when `broken`; SHA256SUMS made to match."""
    with tarfile.open(bundle) as src:
        members = [(m, src.extractfile(m).read() if m.isfile() else b"") for m in src]  # type: ignore[union-attr]
    files = {m.name: data for m, data in members}
    (top,) = {name.split("/")[0] for name in files}
    changed = []
    if version is not None:
        changed.append(f"{top}/BUNDLE")
        files[f"{top}/BUNDLE"] = b"".join(
            b"version=" + version.encode() + b"\n" if line.startswith(b"version=") else line
            for line in files[f"{top}/BUNDLE"].splitlines(keepends=True)
        )
    if broken:
        (wheel,) = [n for n in files if "/wheels/community_edge-" in n]
        patched = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(files[wheel])) as zin, zipfile.ZipFile(patched, "w") as zout:
            for item in zin.infolist():
                data = zin.read(item)
                zout.writestr(item, data + BROKEN if item.filename == "edge/runtime.py" else data)
        files[wheel] = patched.getvalue()
        changed.append(wheel)
    sums = files[f"{top}/SHA256SUMS"].decode().splitlines()
    for name in changed:
        rel = "./" + name.split("/", 1)[1]
        digest = hashlib.sha256(files[name]).hexdigest()
        sums = [f"{digest}  {rel}" if line.endswith("  " + rel) else line for line in sums]
    files[f"{top}/SHA256SUMS"] = ("\n".join(sums) + "\n").encode()
    # the wheels are compressed already: the fastest level makes the copy in seconds
    with tarfile.open(out, "w:gz", compresslevel=1) as dst:
        for member, _ in members:
            data = files[member.name]
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return out


@pytest.fixture(scope="session")
def upgrade_bundle(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's bundle as version 0.2.0 (an upgrade of it); read only, like `bundle`."""
    return built_once(
        tmp_path_factory,
        "dist-0.2.0",
        lambda out: repack(bundle, out / "community-edge-0.2.0.tar.gz", "0.2.0"),
    )


@pytest.fixture
def offline() -> Iterator[list[str]]:
    """The command prefix that runs a command in a network namespace of the test's own whose only
    interface is loopback (`ip netns`, as root); every command run with it sees the same loopback,
    so a gateway started by one answers the next. Skipped where it is refused, failed under CI."""
    ip = shutil.which("ip")
    name = f"edge-offline-{os.getpid()}-{free_port()}"
    why = None
    if ip is None:
        why = "ip (iproute2) is needed"
    elif os.geteuid() != 0:
        why = "ip netns needs root"
    else:
        made = subprocess.run([ip, "netns", "add", name], capture_output=True, text=True)
        if made.returncode != 0:
            why = f"ip netns add is not permitted here: {made.stderr.strip()}"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"an install with no network needs a network namespace: {why}")
        pytest.skip(why)
    assert ip is not None
    try:
        subprocess.run([ip, "netns", "exec", name, ip, "link", "set", "lo", "up"], check=True)
        yield [ip, "netns", "exec", name]
    finally:
        subprocess.run([ip, "netns", "delete", name], check=False)


# A gateway's start and stop without systemd: `edge run` in the background, its pid in a file,
# with the unit's Python settings (optimised bytecode, read from the venv's cache that install.sh
# compiles). A stopped process is waited for until it is gone (or a zombie no one here can reap).
UNIT_ENV = 'PYTHONOPTIMIZE=2 PYTHONPYCACHEPREFIX="{prefix}/.venv/pycache"'
START_CMD = (
    UNIT_ENV + ' nohup "{prefix}/.venv/bin/edge" run -c "{etc}/site.yaml" >> "{data}/run.log" 2>&1 '
    '& echo $! > "{data}/edge.pid"'
)
STOP_CMD = (
    'p=$(cat "{data}/edge.pid" 2>/dev/null) || exit 0; kill "$p" 2>/dev/null || exit 0; '
    'while [ -d /proc/$p ] && [ "$(cut -d" " -f3 /proc/$p/stat 2>/dev/null)" != Z ]; do sleep 0.1; done'
)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def stop_pid_file(pid_file: Path) -> None:
    """Stop the gateway whose pid `pid_file` holds (SIGTERM, then SIGKILL after 30 s)."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    if not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    try:
        until_sync(lambda: not alive(pid), timeout=30, what=f"pid {pid} to exit")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        until_sync(lambda: not alive(pid), timeout=10, what=f"pid {pid} to die")


@pytest.fixture
def pid_files() -> Iterator[list[Path]]:
    """Pid files of gateways a test starts through START_CMD; each is stopped at the end."""
    files: list[Path] = []
    yield files
    for f in files:
        stop_pid_file(f)


PLAYBOOK = ROOT / "deploy" / "ansible" / "playbook.yml"
ANSIBLE = Path(sys.executable).parent / "ansible-playbook"


def run_playbook(root: Path, inventory: Path, timeout: float) -> tuple[int, str, dict[str, dict[str, int]]]:
    """The real ansible-playbook on the shipped playbook with `inventory`, its home and temp under
    `root`: (exit code, output, each host's recap counts)."""
    env = dict(
        os.environ,
        ANSIBLE_HOME=str(root / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(root / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_CONFIG=str(PLAYBOOK.parent / "ansible.cfg"),
        PYTHONWARNINGS="ignore",
    )
    done = subprocess.run(
        [str(ANSIBLE), "-i", str(inventory), str(PLAYBOOK)],
        cwd=PLAYBOOK.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out = done.stdout + done.stderr
    recap = {
        m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", out, re.M)
    }
    return done.returncode, out, recap


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user may reach (pytest's own temporary folders are their owner's alone)."""
    path = Path(tempfile.mkdtemp(prefix="edge-doctor-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
