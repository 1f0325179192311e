"""The state database: a migration step applied once by two processes opening it at once; its
page cache capped."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.state import STATE_CACHE_KIB, StateDB

STEPS = [
    "CREATE TABLE things (id INTEGER PRIMARY KEY);",
    "ALTER TABLE things ADD COLUMN name TEXT;",  # a second run fails: duplicate column
]


def test_a_step_another_connection_applied_meanwhile_is_not_applied_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "state.db")
    StateDB(path).migrate("things", STEPS[:1])  # an old database: version 1
    first, second = StateDB(path), StateDB(path)
    real = StateDB.version
    raced = False

    def version_then_the_other_migrates(self: StateDB, component: str) -> int:
        """`second` reads version 1, then `first` (another process) migrates before `second`
        starts its own transaction: the interleaving of two processes opening the file at once."""
        nonlocal raced
        seen = real(self, component)
        if self is second and not raced:
            raced = True
            real_migrate(first, "things", STEPS)
        return seen

    real_migrate = StateDB.migrate
    monkeypatch.setattr(StateDB, "version", version_then_the_other_migrates)
    second.migrate("things", STEPS)
    assert raced
    assert real(second, "things") == 2
    assert [c[1] for c in second.conn.execute("PRAGMA table_info(things)")] == ["id", "name"]
    first.close()
    second.close()


def test_the_state_databases_page_cache_is_capped(tmp_path: Path) -> None:
    # one connection for as long as the gateway runs: SQLite's default cache (2 MB) would fill
    # with every page it ever read
    db = StateDB(str(tmp_path / "state.db"))
    try:
        assert db.conn.execute("PRAGMA cache_size").fetchone()[0] == -STATE_CACHE_KIB
        assert STATE_CACHE_KIB <= 512
    finally:
        db.close()
