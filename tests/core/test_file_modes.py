"""Data files are private whatever the umask: `edge run` started with umask 022 creates only 0600
files and 0700 directories (WAL and SHM included), tightens a data directory an older version left
0755/0644, and an embedded Runtime does the same; a damaged state database is a clear error."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import StorageConfig
from edge.fileperm import make_private
from tests.core.test_service import SITE, NotifySocket, _records, _start
from tests.support.cli import edge_cli
from tests.support.procs import stop_process, terminate
from tests.support.site import running_site, site_file
from tests.support.waiting import until_sync

LOOSE_UMASK = 0o022  # the usual login umask: files 0644, directories 0755
SHOT = "0" * 64 + ".jpg"


def not_private(root: Path) -> list[str]:
    """Every directory under `root` (itself included) not 0700 and every file not 0600."""
    out = []
    for path in [root, *sorted(root.rglob("*"))]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            out.append(f"{oct(mode)} {path.relative_to(root.parent)}")
    return out


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The test process's umask at 022 (an embedding program's), restored afterwards."""
    previous = os.umask(LOOSE_UMASK)
    yield
    os.umask(previous)


def _data_site(tmp_path: Path) -> tuple[Path, Path]:
    """A sim site whose journal, trend index and state live in tmp_path/data (not created yet)."""
    data = tmp_path / "data"
    return site_file(tmp_path, {**SITE, "storage": {"path": str(data / "edge.db")}}), data


def _run_until(config: Path, data: Path, condition: str) -> str:
    """`edge run` with umask 022 until `condition` holds ("ready" or "wal"); the log after SIGTERM."""
    (config.parent / "notify.sock").unlink(missing_ok=True)  # left by the run before
    notify = NotifySocket(config.parent / "notify.sock")
    proc = _start(config, {"NOTIFY_SOCKET": str(notify.path)}, umask=LOOSE_UMASK)
    try:
        until_sync(lambda: any("READY=1" in m for m in notify.poll()), timeout=30, what="READY=1")
        if condition == "wal":
            until_sync(lambda: len(_records(data / "edge.db")) > 20, what="readings committed")
            wal = ("edge.db-wal", "edge.db-shm", "trend.db-wal", "state.db-wal")
            until_sync(lambda: all((data / n).exists() for n in wal), what="the WAL files")
            assert not_private(data) == []  # while running: the WAL and SHM files too
        out = terminate(proc)
    finally:
        stop_process(proc)
        notify.close()
    assert proc.returncode == 0, out[-3000:]
    return out


def test_edge_run_with_umask_022_creates_only_private_files(tmp_path: Path) -> None:
    config, data = _data_site(tmp_path)
    out = _run_until(config, data, "wal")
    names = {p.name for p in data.iterdir()}
    assert {"edge.db", "trend.db", "state.db"} <= names
    assert not_private(data) == []
    assert "made data files private" not in out  # created private, nothing to tighten


def test_a_data_dir_an_older_version_left_readable_is_tightened_at_start(tmp_path: Path) -> None:
    config, data = _data_site(tmp_path)
    _run_until(config, data, "ready")
    shots = data / "blobs" / "cam-1"  # snapshots of a camera the site had once
    shots.mkdir(parents=True)
    (shots / SHOT).write_bytes(b"\xff\xd8 a picture")
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert not_private(data)
    out = _run_until(config, data, "ready")
    assert not_private(data) == []
    assert "made data files private (other users could read them):" in out
    for name in (str(data), str(data / "edge.db"), str(data / "state.db")):
        assert name in out


async def test_an_embedded_runtime_makes_its_files_private_under_umask_022(
    tmp_path: Path, loose_umask: None
) -> None:
    doc = {**SITE, "storage": {"path": str(tmp_path / "data" / "edge.db")}}
    async with running_site(tmp_path, doc, web=False) as rt:
        data = tmp_path / "data"
        assert {"edge.db-wal", "trend.db", "state.db-wal"} <= {p.name for p in data.iterdir()}
        assert not_private(data) == []
        assert rt.journal.committed_seq >= 0
    assert not_private(data) == []


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (0o1777, "writable by everyone"),  # like /tmp
        (0o755, "holds other files too, such as notes.txt"),  # a project dir with storage.path: edge.db
    ],
)
def test_a_directory_holding_more_than_the_data_keeps_its_mode_and_the_data_is_private(
    tmp_path: Path, mode: int, reason: str
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    for name in ("edge.db", "edge.db-wal", "notes.txt"):
        (shared / name).write_bytes(b"")
        (shared / name).chmod(0o644)
    changed, kept = make_private(StorageConfig(path=str(shared / "edge.db")))
    assert changed == [str(shared / "edge.db"), str(shared / "edge.db-wal")]
    assert kept == [f"{shared} ({reason})"]
    assert stat.S_IMODE(shared.stat().st_mode) == mode
    assert stat.S_IMODE((shared / "edge.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((shared / "notes.txt").stat().st_mode) == 0o644


def test_a_state_database_that_is_not_a_database_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    config, data = _data_site(tmp_path)
    data.mkdir()
    state = data / "state.db"
    state.write_bytes(b"this was never an SQLite file\n" * 200)
    proc = edge_cli("run", "-c", str(config))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"start failed: {state}: the state database" in proc.stdout
    assert "restore it from a backup, or move it aside" in proc.stdout
    users = edge_cli("users", "list", "-c", str(config))
    assert users.returncode == 1
    assert users.stderr.startswith(f"error: {state}: the state database")
    assert "Traceback" not in users.stderr
    assert state.read_bytes().startswith(b"this was never")  # left as it was
    with pytest.raises(sqlite3.DatabaseError):  # still not a database: nothing was written into it
        sqlite3.connect(state).execute("SELECT 1 FROM sqlite_master").fetchall()
