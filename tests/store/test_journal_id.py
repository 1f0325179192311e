"""Every journal carries a `journal_id` (uuid4 hex in its `meta`): given when it is created, or at
the first writable open of a journal made before it existed, never by a read-only open. A backup
copies it and a restore keeps it, so a restore whose archive's records retention has since deleted
from the journal it replaces still knows that journal went on from the archive's. Before, only a
restored journal had one, and such a restore onto the very box that was backed up was refused."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from edge.store.schema import migrate
from tests.store.helpers import open_journal, readings
from tests.support.cli import edge_cli
from tests.support.site import site_file
from tests.support.waiting import until

SITE: dict[str, Any] = {"site": {"id": "lineage", "name": "l"}}


def meta_ids(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in conn.execute("SELECT value FROM meta WHERE key='journal_id'")]
    finally:
        conn.close()


def is_uuid4_hex(value: str | None) -> bool:
    return value is not None and uuid.UUID(hex=value).version == 4 and uuid.UUID(hex=value).hex == value


async def test_a_new_journal_has_an_id_that_stays(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    await journal.close()
    ids = meta_ids(tmp_path / "edge.db")
    assert len(ids) == 1 and is_uuid4_hex(ids[0]), ids
    made = ids[0]
    journal = open_journal(tmp_path)
    try:
        assert journal.journal_id == made
    finally:
        await journal.close()
    assert meta_ids(tmp_path / "edge.db") == [made]


async def test_an_old_journal_gets_one_at_its_first_open_not_from_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:  # the schema as a release without journal_id left it, with a record
        migrate(conn, str(path))
        conn.execute("INSERT INTO journal(seq, ts, point, value, quality) VALUES(1, 1000.0, 'm.p', 1.0, 0)")
        conn.execute("UPDATE counters SET value = 1 WHERE name = 'rows'")
    finally:
        conn.close()
    assert meta_ids(path) == []

    config = site_file(tmp_path, SITE)
    stats = edge_cli("buffer", "stats", "-c", str(config))  # opens the journal read-only
    assert stats.returncode == 0, stats.stderr
    assert meta_ids(path) == []

    journal = open_journal(tmp_path)
    await journal.close()
    ids = meta_ids(path)
    assert len(ids) == 1 and is_uuid4_hex(ids[0]), ids


async def test_a_restore_after_retention_deleted_the_archives_records_is_accepted_by_the_id(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    try:  # records of long ago: past any retention
        journal.append(readings(186, start_ts=1_000.0, step=1e-3))
        await journal.flush()
    finally:
        await journal.close()
    config = site_file(tmp_path, SITE)
    archive = tmp_path / "nightly.tar.gz"
    done = edge_cli("backup", "-c", str(config), "--out", str(archive))
    assert done.returncode == 0, done.stderr

    # the gateway goes on; retention deletes every record the backup holds
    journal = open_journal(tmp_path, keep_history=60.0, retention_interval=0.01)
    try:
        journal.append(readings(50, start_ts=time.time(), step=1e-3))
        await journal.flush()
        await until(lambda: journal.counters["retention_deleted"] >= 186, timeout=30, what="retention")
        newest = journal.committed_seq
    finally:
        await journal.close()
    conn = sqlite3.connect(f"file:{tmp_path / 'edge.db'}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT min(seq) FROM journal").fetchone()[0] > 186
    finally:
        conn.close()

    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"records 187-{newest} are not in the backup" in done.stdout, done.stdout
    # the restored journal keeps the line of the one it replaced (kept as edge.db.pre-restore)
    line = meta_ids(tmp_path / "edge.db.pre-restore")
    assert len(line) == 1 and meta_ids(tmp_path / "edge.db") == line
