"""A restore continues above the replaced journal's seqs only when that journal went on from the
archive's: a replacement box that ran once has a journal of its own, whose seqs say nothing of
those the receivers hold from the lost box, so the restore is refused there unless
`--continue-after` names them, and the journal it replaces is kept and named, never silently."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.store.helpers import open_journal, readings
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file

SITE = {"site": {"id": "lineage", "name": "l"}}


async def journal_of(folder: Path, n: int, start_ts: float, device: str = "meter") -> None:
    """`n` readings appended to the journal in `folder` (created on first use)."""
    journal = open_journal(folder)
    try:
        journal.append(readings(n, start_ts=start_ts, step=1e-3, device=device))
        await journal.flush()
    finally:
        await journal.close()


def query(path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def write(path: Path, sql: str, args: tuple[object, ...] = ()) -> None:
    """One statement committed to the SQLite file at `path` (what retention or an earlier release
    would have done to it)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(sql, args)
    finally:
        conn.close()


def top(path: Path) -> int:
    return int(query(path, "SELECT coalesce(max(seq), 0) FROM journal")[0][0])


def lost_box_backup(tmp_path: Path) -> tuple[Path, int, int]:
    """The lost box: backed up, then went on. Returns (archive, backup's last seq, lost box's last)."""
    lost = tmp_path / "lost"
    lost.mkdir()
    config = site_file(lost, SITE)
    asyncio.run(journal_of(lost, 186, 1_000.0))
    archive = tmp_path / "nightly.tar.gz"
    done = edge_cli("backup", "-c", str(config), "--out", str(archive))
    assert done.returncode == 0, done.stderr
    asyncio.run(journal_of(lost, 209, 2_000.0))
    return archive, 186, top(lost / "edge.db")


def test_a_replacement_box_that_ran_once_is_refused_without_continue_after(tmp_path: Path) -> None:
    archive, backed_up, lost_top = lost_box_backup(tmp_path)
    new = tmp_path / "new"
    new.mkdir()
    config = site_file(new, SITE)
    asyncio.run(journal_of(new, 133, 5_000.0))  # the replacement box's own first start
    journal = new / "edge.db"
    before = journal.read_bytes()

    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 1, done.stdout
    assert f"the journal it would replace, {journal} (seqs up to 133)" in done.stderr, done.stderr
    assert "a journal of its own" in done.stderr
    assert "--continue-after SEQ" in done.stderr and "Nothing was replaced" in done.stderr
    assert journal.read_bytes() == before
    assert not Path(f"{journal}.pre-restore").exists()

    done = edge_cli("restore", "-c", str(config), str(archive), "--continue-after", str(lost_top))
    assert done.returncode == 0, done.stderr
    kept = Path(f"{journal}.pre-restore")
    assert "the replaced journal (seqs up to 133) did not go on from this backup" in done.stdout
    assert f"it is kept whole in {kept}" in done.stdout
    assert top(kept) == 133 and top(journal) == backed_up
    # a second restore before a start would replace the only copy of the box's own records
    again = edge_cli("restore", "-c", str(config), str(archive), "--continue-after", str(lost_top))
    assert again.returncode == 1 and f"kept only in {kept}" in again.stderr, again.stderr

    async def start_and_ingest() -> None:
        async with running_site(new, SITE) as rt:
            rt.hub.ingest(readings(50, start_ts=9_000.0, device="after"))
            await rt.journal.flush()

    asyncio.run(start_and_ingest())
    rows = query(journal, "SELECT seq, kind, payload FROM journal WHERE seq > ? ORDER BY seq", (backed_up,))
    assert rows[0][0] == lost_top + 1 and rows[0][1] == "journal_restored", rows[:3]
    payload = json.loads(str(rows[0][2]))
    assert payload["first_seq"] == backed_up + 1 and payload["last_seq"] == lost_top
    assert payload["continue_after"] == lost_top and payload["kept_in"] is None
    assert payload["replaced_journal"] == {"kept_in": "edge.db.pre-restore", "last_seq": 133}
    assert min(int(r[0]) for r in rows) > lost_top  # no seq the lost box issued is issued again


def test_a_replacement_box_that_ran_past_the_backup_is_refused_too(tmp_path: Path) -> None:
    archive, backed_up, _ = lost_box_backup(tmp_path)
    new = tmp_path / "new"
    new.mkdir()
    config = site_file(new, SITE)
    asyncio.run(journal_of(new, 300, 5_000.0))  # its own records at the backup's seqs
    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 1, done.stdout
    assert f"holds a record at seq {backed_up} other than the backup's" in done.stderr, done.stderr
    assert not (new / "edge.db.pre-restore").exists()


def test_the_box_that_was_backed_up_still_restores_above_its_own_seqs(tmp_path: Path) -> None:
    archive, backed_up, lost_top = lost_box_backup(tmp_path)
    config = tmp_path / "lost" / "site.yaml"
    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert f"records {backed_up + 1}-{lost_top} are not in the backup" in done.stdout
    assert "did not go on" not in done.stdout


def test_the_journal_id_decides_where_retention_deleted_the_backups_records(tmp_path: Path) -> None:
    """The restored journal carries a journal_id, and backups of it too: a later restore of such a
    backup onto the journal that went on from it is accepted even when retention has deleted every
    record the backup holds, and a journal with another id is refused."""
    archive, _, lost_top = lost_box_backup(tmp_path)
    lost = tmp_path / "lost"
    config = lost / "site.yaml"
    assert edge_cli("restore", "-c", str(config), str(archive)).returncode == 0
    (lost / "edge.db.pre-restore").unlink()
    ids = query(lost / "edge.db", "SELECT value FROM meta WHERE key='journal_id'")
    assert len(ids) == 1 and ids[0][0]
    second = tmp_path / "second.tar.gz"
    assert edge_cli("backup", "-c", str(config), "--out", str(second)).returncode == 0
    asyncio.run(journal_of(lost, 100, 3_000.0))
    newest = top(lost / "edge.db")
    # what retention does to the oldest records
    write(lost / "edge.db", "DELETE FROM journal WHERE seq <= ?", (newest - 10,))
    done = edge_cli("restore", "-c", str(config), str(second))
    assert done.returncode == 0, done.stderr
    assert top(lost / "edge.db.pre-restore") == newest > lost_top

    other = tmp_path / "other"
    other.mkdir()
    other_config = site_file(other, SITE)
    asyncio.run(journal_of(other, 5, 7_000.0))
    write(other / "edge.db", "INSERT OR REPLACE INTO meta(key, value) VALUES('journal_id', 'another-line')")
    done = edge_cli("restore", "-c", str(other_config), str(second))
    assert done.returncode == 1, done.stdout
    assert "its journal_id differs" in done.stderr, done.stderr


def test_an_archive_without_an_id_restored_onto_its_own_line_keeps_that_lines_id(tmp_path: Path) -> None:
    """An archive of an earlier release has no journal_id; restored onto the journal that went on
    from it, it takes that journal's, which the backups taken since carry: a later restore of one
    of those is still known as the same line where retention deleted its records."""
    box = tmp_path / "box"
    box.mkdir()
    config = site_file(box, SITE)
    asyncio.run(journal_of(box, 50, 1_000.0))
    # a journal as an earlier release left it: no journal_id
    write(box / "edge.db", "DELETE FROM meta WHERE key='journal_id'")
    archive = tmp_path / "old.tar.gz"
    assert edge_cli("backup", "-c", str(config), "--out", str(archive)).returncode == 0
    asyncio.run(journal_of(box, 20, 2_000.0))  # this release goes on with it, and names its line
    line = query(box / "edge.db", "SELECT value FROM meta WHERE key='journal_id'")
    assert len(line) == 1 and line[0][0]
    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert query(box / "edge.db", "SELECT value FROM meta WHERE key='journal_id'") == line


def test_an_archive_from_before_the_journal_had_an_id_restores_after_retention(tmp_path: Path) -> None:
    """A backup taken before the upgrade (by the earlier release, or the one install.sh takes
    before it starts the new one) has no journal_id, and the journal gets its id only at the new
    release's first start: once retention has deleted the backup's records, the seq the journal had
    issued when it got its id still says the backup is of its line."""
    box = tmp_path / "box"
    box.mkdir()
    config = site_file(box, SITE)
    asyncio.run(journal_of(box, 50, 1_000.0))
    # the journal as the earlier release left it
    write(box / "edge.db", "DELETE FROM meta WHERE key IN ('journal_id', 'journal_id_since')")
    archive = tmp_path / "before-upgrade.tar.gz"
    assert edge_cli("backup", "-c", str(config), "--out", str(archive)).returncode == 0
    asyncio.run(journal_of(box, 30, 2_000.0))  # the new release's first start gives the id
    assert query(box / "edge.db", "SELECT value FROM meta WHERE key='journal_id_since'") == [(50,)]
    newest = top(box / "edge.db")
    # what retention does to the oldest records, the backup's among them
    write(box / "edge.db", "DELETE FROM journal WHERE seq <= ?", (newest - 5,))
    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert top(box / "edge.db.pre-restore") == newest

    # a journal created with its id (a replacement box) is not taken for the backup's line
    other = tmp_path / "other"
    other.mkdir()
    other_config = site_file(other, SITE)
    asyncio.run(journal_of(other, 80, 7_000.0))
    write(other / "edge.db", "DELETE FROM journal WHERE seq <= 75")
    done = edge_cli("restore", "-c", str(other_config), str(archive))
    assert done.returncode == 1, done.stdout
