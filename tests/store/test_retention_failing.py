"""A retention step that fails (a damaged page of the journal) is counted and said: buffer health
(in the writer's process and through the state it publishes to `edge buffer stats`) names it, with
the number of failed steps, for as long as it fails. Before, it was a warning in the log every
5 s while records past their retention were kept and every health figure looked fine."""

from __future__ import annotations

import time
from pathlib import Path

from edge.config import StorageConfig
from edge.store.health import buffer_health
from edge.store.journal import Journal
from tests.store.helpers import damage_journal_leaf, open_journal, readings
from tests.support.waiting import until


async def test_a_failing_retention_step_is_counted_and_named_in_health(tmp_path: Path) -> None:
    old = time.time() - 3600
    j = open_journal(tmp_path, keep_history=None)  # nothing expires while it is filled
    j.append(readings(20_000, start_ts=old, step=1e-3))
    await j.flush()
    await j.close()
    path = tmp_path / "edge.db"
    damage_journal_leaf(path, offset=2)

    storage = StorageConfig(path=str(path), keep_history=60)
    j = open_journal(tmp_path, keep_history=60.0, retention_interval=0.01)
    try:
        await until(lambda: j.retention_failures >= 3, timeout=30, what="retention steps failing")
        health = buffer_health(j, storage)
        assert health["retention_failures"] >= 3
        failing = health["retention_failing"]
        assert failing is not None and "malformed" in failing, failing
        assert "records past their retention are not deleted" in failing
        assert j.retention_problem is not None
        assert health["rows"] == 20_000  # nothing was deleted, and that is what health now says

        # another process (`edge buffer stats`) reads it from the state the writer publishes
        reader = Journal.open_readonly(str(path))
        try:
            await until(
                lambda: buffer_health(reader, storage)["retention_failures"] >= 3,
                timeout=30,
                what="the published retention failures",
            )
            seen = buffer_health(reader, storage)
            assert seen["writer"] != "not running"
            assert seen["retention_failing"] is not None and "malformed" in seen["retention_failing"]
        finally:
            await reader.close()
    finally:
        await j.close()


async def test_a_sound_journal_reports_no_retention_failure(tmp_path: Path) -> None:
    old = time.time() - 3600
    j = open_journal(tmp_path, keep_history=60.0, retention_interval=0.01)
    try:
        j.append(readings(2_000, start_ts=old, step=1e-3))
        await j.flush()
        await until(lambda: j.counters["rows"] == 0, timeout=30, what="retention to delete the old rows")
        health = buffer_health(j, StorageConfig(path=str(tmp_path / "edge.db"), keep_history=60))
        assert health["retention_failures"] == 0 and health["retention_failing"] is None
        assert j.retention_problem is None
    finally:
        await j.close()
