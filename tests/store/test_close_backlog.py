"""A graceful stop with a backlog waiting in memory: the close commits it step after step, not one
step; what it cannot commit (commits fail, or its time is up) is counted in `dropped_overflow`,
reported as a `buffer_drop` event of reason `shutdown`, both committed, and logged with the count."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import orjson
import pytest

from edge.store.journal import Journal
from tests.store.helpers import drop_events, open_journal, readings
from tests.store.test_disk_filled_elsewhere import RESERVE, fill_leaving, small_disk  # noqa: F401
from tests.support.waiting import until

STEP = 100


def stored(path: str) -> tuple[int, dict[str, int]]:
    """(rows in the journal, persisted counters) read from the file as a restart would."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT count(*) FROM journal WHERE kind IS NULL").fetchone()[0]
        counters = {str(k): int(v) for k, v in conn.execute("SELECT name, value FROM counters")}
    finally:
        conn.close()
    return int(rows), counters


def shutdown_drops(path: str) -> list[dict[str, object]]:
    payloads = [orjson.loads(raw) for _, raw in drop_events(path)]
    return [p for p in payloads if p.get("reason") == "shutdown"]


async def close_with_backlog(j: Journal, n: int, budget: float | None = None) -> None:
    """Close `j` while `n` records wait in memory: another connection holds the file's write lock
    until the writer has taken its first step and the close has begun, so the backlog is still
    there when the close starts, whatever the machine's speed."""
    if budget is not None:
        j.close_budget = budget
    other = sqlite3.connect(j.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        j.append(readings(n))
        # the writer took one step and waits for the lock in its BEGIN IMMEDIATE
        await until(lambda: j.pending == n - STEP, 10, what="the writer's first step taken")
        closing = asyncio.create_task(j.close())
        await asyncio.sleep(0)  # one turn of the loop: the close task asks the writer to stop
        other.execute("COMMIT")
        await asyncio.wait_for(closing, 30)
    finally:
        other.close()


async def test_a_close_commits_every_step_of_the_backlog(tmp_path: Path) -> None:
    j = open_journal(tmp_path, flush_max_items=STEP, disk_reserve=None, flush_interval=60.0)
    await close_with_backlog(j, 10 * STEP)
    rows, counters = stored(j.path)
    assert rows == 10 * STEP
    assert counters.get("dropped_overflow", 0) == 0
    assert shutdown_drops(j.path) == []


async def test_a_close_out_of_time_counts_and_journals_what_is_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = open_journal(tmp_path, flush_max_items=STEP, disk_reserve=None, flush_interval=60.0)
    with caplog.at_level(logging.ERROR, logger="edge.store"):
        await close_with_backlog(j, 10 * STEP, budget=0.0)  # the step under way, then no time left
    rows, counters = stored(j.path)
    left = 10 * STEP - rows
    assert rows >= STEP and left > 0  # the steps under way went in, the rest was left
    assert counters["dropped_overflow"] == left  # persisted: a restart reads it
    [event] = shutdown_drops(j.path)
    assert event["dropped"] == left
    [line] = [r.getMessage() for r in caplog.records if "journal closed with" in r.getMessage()]
    assert line.startswith(f"journal closed with {left} records it could not commit")
    assert line.endswith("the close's 0 s were up")


@pytest.mark.root
async def test_a_close_on_a_full_disk_commits_the_count_and_its_event(
    small_disk: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The disk below the reserve at the stop: no step fits, so the backlog is counted, and the
    count and its buffer_drop event go in with a last transaction of a few pages."""
    j = open_journal(small_disk, when_full="drop_oldest", disk_reserve=RESERVE, flush_max_items=2000)
    j.append(readings(3000, device="before"))
    await j.flush()
    fill_leaving(small_disk, RESERVE // 2)
    j.append(readings(5000))
    await until(lambda: j.disk_full and j.pending == 5000, 30, what="the backlog held in memory")
    with caplog.at_level(logging.ERROR, logger="edge.store"):
        await j.close()
    rows, counters = stored(j.path)
    assert rows == 3000
    assert counters["dropped_overflow"] == 5000
    [event] = shutdown_drops(j.path)
    assert event["dropped"] == 5000
    [line] = [r.getMessage() for r in caplog.records if "journal closed with" in r.getMessage()]
    assert line.startswith("journal closed with 5000 records it could not commit")
    assert ": disk full: " in line  # why: the commits that failed, not the time
