"""`edge privacy backup-keys` copies keys.db beside a running gateway with the keys still in its
WAL: put back on a new box with the journal, the copy opens every sealed record. Its --out is
guarded as export's is, the copy is 0600 and the copy is audited."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from edge import audit
from edge.state import StateDB
from tests.privacy.conftest import measurement, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file

RESIDENTS = [f"R-7{n:04d}" for n in range(20)]


def backup_keys(config: Path, out: Path, *more: str) -> tuple[int, str, str]:
    done = edge_cli("privacy", "backup-keys", "-c", str(config), "--out", str(out), *more)
    return done.returncode, done.stdout, done.stderr


def wal_bytes(tmp_path: Path) -> int:
    wal = tmp_path / "keys.db-wal"
    return wal.stat().st_size if wal.exists() else 0


def new_box(old: Path, keys_copy: Path, master: Path) -> Path:
    """A second data dir with the old journal (checkpointed, the gateway stopped) and the copy as
    its keys.db: what a box lost and replaced gets back."""
    box = old / "newbox"
    box.mkdir()
    shutil.copy(old / "edge.db", box / "edge.db")
    shutil.copy(keys_copy, box / "keys.db")
    return site_file(box, site_doc(master))


def side_files(path: Path) -> list[str]:
    return [p.name for p in path.parent.iterdir() if p.name.startswith(f"{path.name}-")]


def texts(path: Path) -> str:
    return path.read_text(encoding="utf-8")


async def test_a_copy_taken_beside_the_running_gateway_holds_the_keys_in_its_wal(
    tmp_path: Path, master: Path
) -> None:
    config = site_file(tmp_path, site_doc(master))
    out = tmp_path / "safe" / "keys-copy.db"
    out.parent.mkdir()
    async with running_site(tmp_path, texts(config), web=False) as rt:
        rt.hub.ingest([measurement(resident=r, systolic=100 + i) for i, r in enumerate(RESIDENTS)])
        await rt.journal.flush()
        assert wal_bytes(tmp_path) > 0  # the new keys are in keys.db-wal, not yet in keys.db
        rc, said, err = await asyncio.to_thread(backup_keys, config, out)
    assert rc == 0, err
    assert said.startswith(f"{len(RESIDENTS) + 1} data keys copied")  # the residents' and the site's
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert side_files(out) == []  # one self-contained file

    box = new_box(tmp_path, out, master)
    for i, resident in enumerate(RESIDENTS):
        copy = box.parent / f"{resident}.jsonl"
        done = edge_cli("privacy", "export", "-c", str(box), "--subject", resident, "--out", str(copy))
        assert done.returncode == 0, done.stderr
        assert f'"systolic_mmhg":{100 + i}' in texts(copy)

    state = StateDB(str(tmp_path / "state.db"))
    try:
        [entry] = [e for e in audit.entries(state) if e["action"] == "privacy_backup_keys"]
    finally:
        state.close()
    assert entry["target"] == str(out) and entry["detail"] == {"subject_keys": len(RESIDENTS) + 1}


@pytest.mark.parametrize("target", ["keys.db", "edge.db", "site.yaml", "master.key", "link"])
async def test_the_sites_own_files_are_refused_even_with_force(
    tmp_path: Path, master: Path, target: str
) -> None:
    config = site_file(tmp_path, site_doc(master))
    async with running_site(tmp_path, texts(config), web=False) as rt:
        rt.hub.ingest([measurement()])
        await rt.journal.flush()
    if target == "link":
        (tmp_path / "link").symlink_to(tmp_path / "keys.db")
    path = tmp_path / target
    before = path.read_bytes()
    for more in ((), ("--force",)):
        rc, _, err = backup_keys(config, path, *more)
        assert rc == 1 and "that is" in err, err
        assert path.read_bytes() == before


async def test_an_existing_file_needs_force(tmp_path: Path, master: Path) -> None:
    config = site_file(tmp_path, site_doc(master))
    async with running_site(tmp_path, texts(config), web=False) as rt:
        rt.hub.ingest([measurement()])
        await rt.journal.flush()
    out = tmp_path / "keys-copy.db"
    out.write_text("an older copy")
    out.chmod(0o644)
    rc, _, err = backup_keys(config, out)
    assert rc == 1 and "--force" in err, err
    assert texts(out) == "an older copy"
    rc, _, err = backup_keys(config, out, "--force")
    assert rc == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    conn = sqlite3.connect(out)
    try:
        assert conn.execute("SELECT count(*) FROM subject_keys").fetchone()[0] == 2
    finally:
        conn.close()


def test_a_site_without_a_master_key_has_no_keys_to_copy(tmp_path: Path) -> None:
    config = site_file(tmp_path, "site: {id: clear-site}\n")
    out = tmp_path / "keys-copy.db"
    rc, _, err = backup_keys(config, out)
    assert rc == 1 and "master_key_file is not set" in err, err
    assert not out.exists() and not (tmp_path / "keys.db").exists()
