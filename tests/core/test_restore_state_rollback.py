"""A state DB migration step that fails in a way SQLite answers by rolling the transaction back
itself (a full disk, a RAISE(ROLLBACK)) reports that cause, not "cannot rollback - no transaction
is active", and leaves the component at its version before the step."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.state import StateDB

ROLLED_BACK = [
    "CREATE TABLE things (id INTEGER PRIMARY KEY);",
    "CREATE TABLE guard (x);\nCREATE TRIGGER no_more BEFORE INSERT ON guard\n"
    "BEGIN SELECT RAISE(ROLLBACK, 'the step refused'); END;\nINSERT INTO guard VALUES (1);",
]


def test_a_step_sqlite_rolled_back_itself_reports_its_own_error(tmp_path: Path) -> None:
    state = StateDB(str(tmp_path / "state.db"))
    try:
        with pytest.raises(sqlite3.IntegrityError, match="the step refused"):
            state.migrate("things", ROLLED_BACK)
        assert state.version("things") == 1 and not state.conn.in_transaction
    finally:
        state.close()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of the test's own (mount needs root), unmounted at the end."""
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full filesystem needs mount as root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_a_migration_on_a_full_disk_says_the_disk_is_full(small_fs: Path) -> None:
    state = StateDB(str(small_fs / "state.db"))
    try:
        state.migrate("things", ROLLED_BACK[:1])
        free = shutil.disk_usage(small_fs).free
        (small_fs / "filler").write_bytes(b"\0" * max(0, free - 8192))
        step = (
            "CREATE TABLE numbers (n BLOB);\n"
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 200000)\n"
            "INSERT INTO numbers SELECT randomblob(64) FROM c;"
        )
        with pytest.raises(sqlite3.OperationalError, match="full"):
            state.migrate("things", [ROLLED_BACK[0], step])
        assert state.version("things") == 1
    finally:
        state.close()
