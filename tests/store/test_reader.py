"""The store's named reads on a real journal file: the answers its callers (UI, CLI, sinks, pull
API, rule backfill and dry runs) used to compute with their own SQL, edge cases included."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.model import Event, Reading
from edge.store.reader import JournalReader
from edge.store.rows import EventMatch, JournalClosed
from tests.store.helpers import open_journal


async def test_named_reads_answer_on_a_real_journal(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    try:
        assert j.min_seq() is None and j.first_seq_since(0.0) is None and j.last_seq_before(1e12) is None
        # journal order is arrival order: seq 3 is older (ts 90) than seq 2 (ts 110)
        j.append(
            [
                Reading(100.0, "meter.p", 1.0, 0),
                Reading(110.0, "gate.open", True, 0),
                Reading(90.0, "meter.p", 2.0, 1),  # uncertain: not history
                Event("alert", "rule.hot", ts=120.0),
                Reading(130.0, "meter.q", 3, 0),
            ]
        )
        await j.flush()
        await j.set_cursor("phone", 4, kind="consumer")
        await j.set_cursor("cloud", 2, kind="sink")

        assert j.min_seq() == 1
        assert j.first_at_or_after(3) == (3, 90.0) and j.first_at_or_after(6) is None
        assert j.first_seq_since(95.0) == 1 and j.first_seq_since(131.0) is None
        assert j.last_seq_before(100.0) == 3 and j.last_seq_before(90.0) is None
        assert j.kind_of(4) == "alert" and j.kind_of(1) is None and j.kind_of(99) is None
        assert j.device_counts(1) == {"gate": (1, 110.0), "meter": (2, 130.0)}
        assert [r[0] for r in j.history_page(0, 5, 10)] == [1, 2, 5]
        assert [r[0] for r in j.history_page(1, 5, 1)] == [2]
        assert [r[0] for r in j.history_page(0, 5, 10, before_ts=110.0)] == [1]
        assert [r[0] for r in j.newest_readings("meter.p", 0.0, None, 0, 10)] == [3, 1]
        assert [r[0] for r in j.newest_readings("meter.p", 95.0, 105.0, 0, 10)] == [1]
        assert [r[0] for r in j.newest_events(EventMatch(kind="alert", source="rule.hot"), 0, 10)] == [4]
        assert j.newest_events(EventMatch(kind="alert", before_seq=4), 0, 10) == []
        assert [r[0] for r in j.newest_readings("meter.q", 0.0, None, 2, 1)] == [5]
        assert j.readings_after(3) == [(130.0, "meter.q", 3, 0)]
        phone = j.consumer_cursor("phone")
        assert phone is not None and phone[0] == 4
        assert j.consumer_cursor("cloud") is None  # a sink's cursor is not a consumer's
        assert j.get_cursor("cloud") == 2
        last, good = j.last_readings()
        assert (
            last["meter.p"].value == 2.0 and good["meter.p"].value == 1.0 and last["gate.open"].value is True
        )
    finally:
        await j.close()


async def test_a_reader_of_its_own_sees_commits_and_refuses_after_close(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    reader = JournalReader(j.path)
    try:
        assert reader.read_rows(0, 10) == [] and reader.oldest_after(0) is None
        j.append([Reading(100.0 + i, "meter.p", float(i), 0) for i in range(5)])
        await j.flush()
        assert [r[0] for r in reader.read_rows(1, 2)] == [2, 3]
        assert [r[0] for r in reader.read_range(2, 4)] == [3, 4]
        assert reader.oldest_after(3) == 103.0  # seq 4
        assert reader.read_rows(0, 10) == j.read_rows(0, 10)
    finally:
        reader.close()
        await j.close()
    with pytest.raises(JournalClosed):
        reader.read_rows(0, 1)
    reader.close()  # a second close is harmless
