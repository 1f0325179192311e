"""The status counts the dead letters of sinks no longer in the site file at every scrape: it must
read those sinks' letters, not the whole table. 50,000 dead letters of the configured sink and 30
of a removed one, on a real state database: counted with SQLite's own virtual-machine steps (a
progress handler), not with a clock."""

from __future__ import annotations

from pathlib import Path

from edge.state import StateDB
from edge.sync import deadletters

CONFIGURED, REMOVED = 50_000, 30


def test_counting_a_removed_sinks_letters_does_not_read_the_others(tmp_path: Path) -> None:
    state = StateDB(str(tmp_path / "state.db"))
    try:
        deadletters.ensure(state)
        with state.lock:
            state.conn.execute("BEGIN")
            state.conn.executemany(
                "INSERT INTO sync_dead_letters(sink, seq, record, status, response, ts, privacy) "
                "VALUES (?, ?, '{}', 400, '', 0, 0)",
                [("central", i) for i in range(CONFIGURED)] + [("old-sink", i) for i in range(REMOVED)],
            )
            state.conn.execute("COMMIT")
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        state.conn.set_progress_handler(count, 100)  # called every 100 VM instructions
        try:
            held = deadletters.held_by_sinks(state, {"central"})
        finally:
            state.conn.set_progress_handler(None, 0)
        assert held == {"old-sink": REMOVED}
        # a scan of the table (or of the configured sink's letters) takes well over 50,000
        # instructions: 500+ calls; the seeks and the removed sink's 30 letters a handful
        assert steps[0] < 50, steps[0]
    finally:
        state.close()
