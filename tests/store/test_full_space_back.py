"""drop_oldest deletes the oldest rows only for space it lacks: when the disk has room again by
the time a failed step's retry is prepared (another program freed it), nothing is deleted. A
full disk's retry raced with the space coming back and lost the oldest records for nothing. A real
journal file; the retry's preparation called as the writer calls it, the writer idle."""

from __future__ import annotations

import time
from pathlib import Path

from edge.model import Reading
from tests.store.helpers import open_journal, sql


async def test_a_retry_after_the_space_came_back_deletes_nothing(tmp_path: Path) -> None:
    j = open_journal(tmp_path, disk_reserve=None, when_full="drop_oldest")
    try:
        t = time.time()
        j.append([Reading(t + i, "meter.kw", float(i)) for i in range(10)])
        await j.flush()
        j._free_space(3000)  # a batch of 3,000 failed on a full disk; the disk has room now
        await j.flush()
        assert j.counters["dropped_oldest"] == 0
        assert [seq for (seq,) in sql(j, "SELECT seq FROM journal ORDER BY seq")] == list(range(1, 11))
    finally:
        await j.close()
