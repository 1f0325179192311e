"""A restore puts the whole archive in place or nothing of it: one that runs out of room (here the
state DB on a small filesystem of its own) leaves every file of the site as it was and says the
disk is full, not that the archive is damaged. Two restores in a row without a start between:
the second would replace the only copy of the records the first left out, so it is refused."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.test_restore_seq import max_row, readings
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of the test's own (mount needs root), unmounted at the end."""
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("a full filesystem needs mount as root")
        pytest.skip("a full filesystem needs mount as root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def fill(where: Path, leave: int) -> Path:
    """Fill the filesystem at `where` but for about `leave` bytes."""
    filler = where / "filler"
    free = shutil.disk_usage(where).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (but a filler) by its relative path, with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "filler" and not p.name.startswith("site")
    }


def leftovers(folder: Path) -> list[Path]:
    """What a restore leaves when it changed nothing: none of its files set aside or staged."""
    return [p for p in folder.rglob("*") if "pre-restore" in p.name or ".edge-restore" in p.name]


async def ran_and_backed_up(tmp_path: Path, doc: dict[str, Any]) -> tuple[Path, Path]:
    """The site runs, is backed up, runs on (records the backup lacks); its site file and archive."""
    config = site_file(tmp_path, doc)
    archive = tmp_path / "b.tar.gz"
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest(readings(1_000.0, 200))
        await rt.journal.flush()
        done = await asyncio.to_thread(edge_cli, "backup", "-c", str(config), "--out", str(archive))
        assert done.returncode == 0, done.stderr
        rt.hub.ingest(readings(2_000.0, 300, "meter.p1"))
        await rt.journal.flush()
    archive.rename(tmp_path.parent / f"{tmp_path.name}-b.tar.gz")  # out of the folders compared
    return config, tmp_path.parent / f"{tmp_path.name}-b.tar.gz"


async def test_a_restore_that_runs_out_of_room_changes_nothing_and_says_why(
    tmp_path: Path, small_fs: Path
) -> None:
    doc = {"site": {"id": "full-site", "name": "f"}, "storage": {"state_path": str(small_fs / "state.db")}}
    config, archive = await ran_and_backed_up(tmp_path, doc)
    filler = fill(small_fs, (small_fs / "state.db").stat().st_size // 2)
    before = snapshot(tmp_path)
    done = await asyncio.to_thread(edge_cli, "restore", "-c", str(config), str(archive))
    assert done.returncode == 1
    assert f"no room left in {small_fs}; the archive is intact" in done.stderr, done.stderr
    assert "damaged" not in done.stderr and "Traceback" not in done.stderr
    assert snapshot(tmp_path) == before  # the journal, the state DB, the trend index: all as they were
    assert not leftovers(tmp_path)

    filler.unlink()  # room made, the same archive restores
    replaced = max_row(tmp_path / "edge.db")
    done = await asyncio.to_thread(edge_cli, "restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert max_row(tmp_path / "edge.db.pre-restore") == replaced


async def test_a_second_restore_before_a_start_keeps_the_records_the_first_left_out(tmp_path: Path) -> None:
    config, archive = await ran_and_backed_up(tmp_path, {"site": {"id": "twice-site", "name": "t"}})
    replaced = max_row(tmp_path / "edge.db")
    done = await asyncio.to_thread(edge_cli, "restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    kept = tmp_path / "edge.db.pre-restore"
    assert f"kept in {kept}" in done.stdout and max_row(kept) == replaced

    live = (tmp_path / "edge.db").read_bytes()
    done = await asyncio.to_thread(edge_cli, "restore", "-c", str(config), str(archive))
    assert done.returncode == 1
    assert "the gateway has not started since" in done.stderr and f"only in {kept}" in done.stderr
    assert max_row(kept) == replaced and (tmp_path / "edge.db").read_bytes() == live

    # the operator moves them away, as told: the restore then goes ahead and says so truly
    away = tmp_path / "away"
    away.mkdir()
    kept.rename(away / kept.name)
    done = await asyncio.to_thread(edge_cli, "restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert max_row(away / kept.name) == replaced
    assert "those it held are kept in" in done.stdout
    # an earlier *.pre-restore a restore replaces is named, not dropped silently
    assert "of an earlier restore were deleted" in done.stdout and "state.db.pre-restore" in done.stdout


async def test_a_restore_onto_a_full_disk_blames_the_disk_not_the_archive(
    tmp_path: Path, small_fs: Path
) -> None:
    config, archive = await ran_and_backed_up(tmp_path, {"site": {"id": "disk-site", "name": "d"}})
    full = site_file(small_fs, {"site": {"id": "disk-site", "name": "d"}}, name="site-full.yaml")
    fill(small_fs, 16 << 10)
    done = await asyncio.to_thread(edge_cli, "restore", "-c", str(full), str(archive))
    assert done.returncode == 1
    assert f"no room left in {small_fs}; the archive is intact" in done.stderr, done.stderr
    assert "the archive is intact" in done.stderr and "damaged" not in done.stderr
    assert not leftovers(small_fs) and not (small_fs / "edge.db").exists()
    # the same archive where there is room
    done = await asyncio.to_thread(edge_cli, "restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
