"""`edge backup` checks each database it copies as `edge restore` will (`PRAGMA integrity_check`):
a damaged journal fails the backup with a clear message and a non-zero exit, and no archive is
left behind, where it used to write an archive every restore of which is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.store.helpers import damage_journal_leaf, open_journal, readings
from tests.support.cli import edge_cli
from tests.support.site import site_file


async def fill(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    try:
        journal.append(readings(20_000, start_ts=1_000.0, step=1e-3))
        await journal.flush()
    finally:
        await journal.close()


def test_a_damaged_journal_fails_the_backup_and_writes_no_archive(tmp_path: Path) -> None:
    config = site_file(tmp_path, {"site": {"id": "damaged", "name": "d"}})
    asyncio.run(fill(tmp_path))
    journal = tmp_path / "edge.db"
    good = tmp_path / "backups" / "good.tar.gz"
    done = edge_cli("backup", "-c", str(config), "--out", str(good))
    assert done.returncode == 0, done.stderr
    damage_journal_leaf(journal, offset=20)

    out = tmp_path / "backups" / "nightly.tar.gz"
    done = edge_cli("backup", "-c", str(config), "--out", str(out))
    assert done.returncode == 1, done.stdout
    assert "written" not in done.stdout
    assert f"{journal} fails PRAGMA integrity_check" in done.stderr, done.stderr
    assert "No archive was written" in done.stderr
    # one line, naming the first faults the check found, however many it found
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()
    # nothing half-made is left beside it, and the earlier archive is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["good.tar.gz"]
    # an existing archive at --out is not replaced by a damaged one
    done = edge_cli("backup", "-c", str(config), "--out", str(good))
    assert done.returncode == 1
    restored = edge_cli("restore", "-c", str(config), str(good))
    assert restored.returncode == 0, restored.stderr


def test_a_sound_site_still_backs_up_and_restores(tmp_path: Path) -> None:
    config = site_file(tmp_path, {"site": {"id": "sound", "name": "s"}})
    asyncio.run(fill(tmp_path))
    out = tmp_path / "b.tar.gz"
    done = edge_cli("backup", "-c", str(config), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "written" in done.stdout
    done = edge_cli("restore", "-c", str(config), str(out))
    assert done.returncode == 0, done.stderr
