"""Files root writes into the service user's data dir stay that user's: a restore run as root (by
hand, or install.sh's rollback) gives the restored files the owner of those they replace, a
state DB `edge tokens create` makes as root before the first start is the data dir owner's, and
`edge doctor --user U` finds data files U cannot open, with the chown that repairs them. The
service user here is `nobody` (os.chown needs root: skipped otherwise)."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file

USER = "nobody"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")


def service() -> tuple[int, int]:
    entry = pwd.getpwnam(USER)
    return entry.pw_uid, entry.pw_gid


def give(folder: Path) -> None:
    """`chown -R nobody:GROUP folder`, as the service's own files are."""
    uid, gid = service()
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)


def owners(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_uid, p.lstat().st_gid)
        for p in sorted(folder.rglob("*"))
        if ".pre-restore" not in p.name
    }


def data_findings(config: Path) -> tuple[int, list[dict[str, Any]]]:
    done = edge_cli("doctor", "-c", str(config), "--user", USER, "--json")
    assert done.stdout, done.stderr
    return done.returncode, [f for f in json.loads(done.stdout)["findings"] if f["check"] == "data"]


async def test_a_restore_as_root_leaves_files_the_service_user_can_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    doc = {"site": {"id": "owned-site", "name": "o"}, "storage": {"path": str(data / "edge.db")}}
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest([])
        await rt.journal.flush()
    (data / "blobs" / "cam").mkdir(parents=True)
    (data / "blobs" / "cam" / "1.jpg").write_bytes(b"\xff\xd8 a snapshot")
    archive = tmp_path / "b.tar.gz"
    done = await asyncio.to_thread(edge_cli, "backup", "-c", str(config), "--out", str(archive))
    assert done.returncode == 0, done.stderr
    give(data)
    _, found = await asyncio.to_thread(data_findings, config)
    assert [f["severity"] for f in found] == ["ok"], found

    done = await asyncio.to_thread(edge_cli, "restore", "-c", str(config), str(archive))  # as root
    assert done.returncode == 0, done.stderr
    restored = owners(data)
    assert {"edge.db", "state.db", "trend.db", "blobs", "blobs/cam", "blobs/cam/1.jpg"} <= set(restored)
    assert set(restored.values()) == {service()}, restored
    _, found = await asyncio.to_thread(data_findings, config)
    assert [f["severity"] for f in found] == ["ok"], found


def test_doctor_finds_root_owned_data_files_and_its_fix_repairs_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = site_file(tmp_path, {"storage": {"path": str(data / "edge.db")}})
    (data / "edge.db").write_bytes(b"")
    (data / "state.db").write_bytes(b"")
    (data / "state.db").chmod(0o600)
    give(data)
    os.chown(data / "state.db", 0, 0)  # left by a command run as root
    code, found = data_findings(config)
    assert code == 2
    (problem,) = found
    assert problem["severity"] == "error" and f"{data / 'state.db'} (root:root 0600)" in problem["message"]
    group = problem["fix"].split()[3].split(":")[1]
    assert problem["fix"] == f"sudo chown -R {USER}:{group} {data}"
    subprocess.run(problem["fix"].removeprefix("sudo ").split(), check=True)
    code, found = data_findings(config)
    assert [f["severity"] for f in found] == ["ok"], found

    # the site's lock file left by a root command that was killed holding it (a restore): the
    # service could not open it, and so would not start
    lock = data / "edge.db-lock"
    lock.write_text("4242\n")
    lock.chmod(0o600)
    code, found = data_findings(config)
    (problem,) = found
    assert code == 2 and f"{lock} (root:root 0600)" in problem["message"], problem


def test_tokens_created_as_root_before_the_first_start_leave_a_state_db_the_service_owns(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    give(data)
    config = site_file(tmp_path, {"storage": {"path": str(data / "edge.db")}})
    done = edge_cli("tokens", "create", "-c", str(config), "--scope", "read", "health-gate")
    assert done.returncode == 0, done.stderr
    made = owners(data)
    assert "state.db" in made and set(made.values()) == {service()}, made
    _, found = data_findings(config)
    assert [f["severity"] for f in found] == ["ok"], found
