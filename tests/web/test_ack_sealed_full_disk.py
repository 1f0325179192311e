"""Sealing the acknowledgements stored in clear (the first start with a master key) on a full
disk: the pass fails with the disk's own error and changes nothing, so the start says why and the
next one seals them; it works once there is room. Its ROLLBACK after a COMMIT that SQLite had
rolled back itself raised "no transaction is active", which hid the full disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.privacy.atrest import Sealer
from edge.privacy.keyfile import create_master_key, load_master_key
from edge.privacy.keys import SubjectKeys
from edge.state import StateDB
from edge.store import rows
from edge.web.ui_api import ACK_MIGRATIONS, seal_clear_acks
from tests.store.test_disk_full import small_disk
from tests.web.test_disk_full_api import fill

__all__ = ["small_disk"]  # the fixture
pytestmark = pytest.mark.root

COMMENT = "called R-90417 about car 沪A23522, BP 187/71 " * 40  # a few pages of clear text


def clear_rows(state: StateDB) -> list[tuple[object, ...]]:
    return state.conn.execute("SELECT user, comment, sealed FROM ui_acks ORDER BY seq").fetchall()


def test_sealing_clear_acks_on_a_full_disk_fails_as_full_and_changes_nothing(small_disk: Path) -> None:
    state = StateDB(str(small_disk / "state.db"))
    master = small_disk / "master.key"
    create_master_key(master)
    keys = SubjectKeys(small_disk / "keys.db", load_master_key(master))
    rows.register(state.path, Sealer(keys))
    try:
        state.migrate("ui", ACK_MIGRATIONS)
        with state.lock:
            for seq in range(1, 41):
                state.conn.execute(
                    "INSERT INTO ui_acks(seq, ts, user, comment) VALUES (?, ?, ?, ?)",
                    (seq, 1.0e9 + seq, f"user-{seq}", COMMENT),
                )
        for user in {f"user-{seq}" for seq in range(1, 41)}:  # their keys exist: the seal needs no new one
            keys.seal(user, b"", b"")
        assert state.give_wal_back()  # no reusable room in the WAL: the pass must ask the disk
        before = clear_rows(state)
        filler = small_disk / "filler"
        fill(filler)
        try:
            with pytest.raises(sqlite3.OperationalError, match="full"):
                seal_clear_acks(state)
            assert clear_rows(state) == before
        finally:
            filler.unlink()
        assert seal_clear_acks(state) == 40
        assert all(user == "" and isinstance(sealed, bytes) for user, _comment, sealed in clear_rows(state))
    finally:
        rows.unregister(state.path)
        keys.close()
        state.close()
