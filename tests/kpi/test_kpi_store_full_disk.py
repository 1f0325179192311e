"""The KPI store on a full disk: a fold step that cannot be stored fails with the disk's own error
and leaves the store as it was; once there is room the next step is stored. (SQLite rolls a
transaction back by itself when it runs out of room; the store's ROLLBACK after it raised "no
transaction is active", which hid the full disk from the caller.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.kpi.store import KpiStore
from edge.state import StateDB
from tests.store.test_disk_full import small_disk
from tests.web.test_disk_full_api import fill

__all__ = ["small_disk"]  # the fixture
pytestmark = pytest.mark.root

DAY = "2026-12-01"


def step(store: KpiStore, data: dict[str, object]) -> None:
    store.commit(days={DAY: data}, state={"seq": 1}, alert_ops=[], day_of=lambda ts: DAY)


def test_a_step_the_disk_cannot_hold_fails_as_full_and_changes_nothing(small_disk: Path) -> None:
    state = StateDB(str(small_disk / "state.db"))
    try:
        store = KpiStore(state)
        step(store, {"n": 1})
        filler = small_disk / "filler"
        fill(filler)
        try:
            with pytest.raises(sqlite3.OperationalError, match="full"):
                step(store, {"n": 2, "pad": "x" * 4_000_000})
            assert store.day(DAY) is not None and store.day(DAY)[0] == {"n": 1}  # type: ignore[index]
        finally:
            filler.unlink()
        step(store, {"n": 3})
        assert store.day(DAY)[0] == {"n": 3}  # type: ignore[index]
    finally:
        state.close()
