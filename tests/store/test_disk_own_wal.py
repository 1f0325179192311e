"""The gateway's own WAL files share the journal's disk: the state database and the trend index keep
theirs small, and give them back when the journal holds for lack of space; while it holds, the
small transactions that need no room for records (a sink's cursor, the counters, the drop events)
still go in. Real SQLite files, a real small tmpfs for the disk."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from edge.state import STATE_WAL_LIMIT, STATE_WAL_PAGES, StateDB
from edge.store import space
from edge.store.trend import TREND_WAL_LIMIT, TREND_WAL_PAGES
from tests.store.helpers import open_journal, readings
from tests.store.test_disk_filled_elsewhere import RESERVE, fill_leaving, small_disk  # noqa: F401
from tests.store.test_trend import following
from tests.support.waiting import until

STEP = 2000
FRAME = 4096 + 24


def wal_size(db: Path | str) -> int:
    return space.file_size(f"{db}-wal")


def stored(path: str, sql: str) -> object:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def leave_exactly(disk: Path, left: int) -> None:
    """Another program takes the free space until `left` bytes (to the filesystem's block) are free."""
    fill_leaving(disk, left)
    free = space.free_bytes(str(disk / "x")) or 0
    extra = (free - left) // 4096 * 4096
    if extra > 0:
        (disk / "other-last").write_bytes(b"\1" * extra)


def grow_state_wal(state: StateDB, total: int) -> None:
    """A state database whose WAL took `total` bytes in one transaction (a burst of dead letters)."""
    state.conn.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
    state.conn.execute("BEGIN IMMEDIATE")
    for _ in range(total // 8192):
        state.conn.execute("INSERT INTO filler VALUES (randomblob(8000))")
    state.conn.execute("COMMIT")


def test_the_state_db_wal_stays_small_and_is_given_back(tmp_path: Path) -> None:
    state = StateDB(str(tmp_path / "state.db"))
    try:
        state.conn.execute("CREATE TABLE letters (b BLOB)")
        largest = 0
        for _ in range(300):  # 2.4 MB in small transactions, as the components write
            state.conn.execute("INSERT INTO letters VALUES (randomblob(8000))")
            largest = max(largest, wal_size(state.path))
        # checkpointed at STATE_WAL_PAGES and cut back at the next write: never the whole history
        assert largest <= max(STATE_WAL_LIMIT, (STATE_WAL_PAGES + 4) * FRAME)
        assert wal_size(state.path) > 0
        assert state.give_wal_back()
        assert wal_size(state.path) == 0
        assert state.conn.execute("SELECT count(*) FROM letters").fetchone()[0] == 300
    finally:
        state.close()


async def test_the_trend_wal_stays_small_and_is_given_back_when_asked(tmp_path: Path) -> None:
    j = open_journal(tmp_path, disk_reserve=None)
    try:
        trend_db = tmp_path / "trend.db"
        async with following(j, trend_db, chunk=2000) as trend:
            now = time.time()  # recent: the journal's retention would delete old rows unread
            largest = 0
            for i in range(40):  # many points: each rollup writes many buckets
                j.append(readings(5000, start_ts=now + i * 600, step=0.1, device=f"d{i}"))
                await j.flush()
                await trend.caught_up()
                largest = max(largest, wal_size(trend_db))
            assert largest <= max(TREND_WAL_LIMIT, (TREND_WAL_PAGES + 64) * FRAME)
            assert wal_size(trend_db) > 0
            trend.give_wal_back()  # as the journal asks, from its writer thread
            await until(lambda: wal_size(trend_db) == 0, 10, what="trend.db's WAL truncated")
    finally:
        await j.close()


@pytest.mark.root
async def test_a_journal_holding_for_space_gets_the_other_stores_wal_back(small_disk: Path) -> None:  # noqa: F811
    """The room beyond the reserve is held by the state database's WAL: the journal holds, asks
    the stores beside it for their space, and goes on by itself once they gave it back."""
    j = open_journal(small_disk, when_full="drop_oldest", disk_reserve=RESERVE, flush_max_items=STEP)
    state = StateDB(str(small_disk / "state.db"))
    j.add_space_reclaimer(state.give_wal_back)  # as the runtime registers it
    try:
        await j.register_cursor("central", "sink", 0)
        async with following(j, small_disk / "trend.db"):
            j.append(readings(3000, device="before"))
            await j.flush()
            grow_state_wal(state, 600 * 1024)
            assert wal_size(state.path) > 500 * 1024
            leave_exactly(small_disk, RESERVE + 40 * 1024)  # not even an empty step fits
            j.append(readings(STEP))
            await until(lambda: j.pending == 0 and j.committed_seq >= 3000 + STEP, 30, what="the backlog in")
            assert wal_size(state.path) == 0
            assert j.counters["dropped_overflow"] == 0 and j.counters["dropped_oldest"] == 0
    finally:
        await j.close()
        state.close()


@pytest.mark.root
async def test_a_journal_holding_for_space_still_commits_cursors_and_counters(small_disk: Path) -> None:  # noqa: F811
    """Too little room for a step of records, enough for a few pages: a sink's cursor moves durably
    (a restart does not send again what was delivered) and the drops are persisted as they
    happen, with their event, instead of in memory only."""
    j = open_journal(
        small_disk, when_full="drop_oldest", disk_reserve=RESERVE, flush_max_items=STEP, max_pending=3000
    )
    try:
        await j.register_cursor("central", "sink", 0)
        j.append(readings(3000, device="before"))
        await j.flush()
        leave_exactly(small_disk, RESERVE + 60 * 1024)
        j.append(readings(STEP))
        await until(lambda: j.disk_full and j.pending == STEP, 30, what="the journal holding")
        await j.set_cursor("central", 3000)  # the sink delivered what was committed
        assert stored(j.path, "SELECT seq FROM cursors WHERE name='central'") == 3000
        assert j.disk_full and j.pending == STEP  # still holding the records
        j.append(readings(3 * STEP))  # beyond max_pending: dropped from memory, counted
        await until(lambda: j.counters["dropped_overflow"] > 0, 10, what="drops beyond max_pending")

        def persisted() -> bool:
            n = stored(j.path, "SELECT value FROM counters WHERE name='dropped_overflow'")
            return n == j.counters["dropped_overflow"] and n == 4 * STEP - 3000

        await until(persisted, 20, what="the drops persisted while holding")
        assert stored(j.path, "SELECT count(*) FROM journal WHERE kind='buffer_drop'") >= 1  # type: ignore[operator]
    finally:
        await j.close()


@pytest.mark.root
async def test_the_trend_wal_is_truncated_after_each_rollup_near_the_reserve(small_disk: Path) -> None:  # noqa: F811
    """Within a few steps of the reserve the journal truncates its WAL after every step; the trend
    index does the same after every rollup, so its WAL does not take the room of the next steps."""
    j = open_journal(small_disk, when_full="drop_oldest", disk_reserve=RESERVE, flush_max_items=STEP)
    trend_db = small_disk / "trend.db"
    try:
        async with following(j, trend_db) as trend:
            now = time.time()  # recent: the journal's retention would delete old rows unread
            leave_exactly(small_disk, RESERVE + 1024**2)  # a full step fits, a few more do not
            for i in range(3):
                j.append(readings(STEP, start_ts=now + i * 600, step=0.1, device=f"d{i}"))
                await j.flush()
                assert j.near_reserve and not j.disk_full
                await trend.caught_up()
                await until(lambda: wal_size(trend_db) == 0, 10, what="trend.db's WAL truncated")
    finally:
        await j.close()
