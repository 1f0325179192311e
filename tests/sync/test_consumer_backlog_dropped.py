"""A backlog counts what a cursor can still fetch: records the journal dropped before they were
fetched (`drop_oldest` at its byte cap) are counted as drops, not as a backlog that will never
arrive. The journal is filled past a small cap while the sink's receiver and the consumer are away."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import Metric

from edge.model import Reading
from edge.sync import metrics
from tests.support.site import running_site
from tests.support.waiting import until
from tests.sync.helpers import sink


def held_after(rt: Any, cursor: int) -> int:
    """The rows the journal holds after `cursor`, counted one by one."""
    return rt.journal.count_range(cursor, rt.journal.committed_seq)


def gauge(fams: list[Metric], name: str, label: str) -> float:
    for fam in fams:
        for sample in fam.samples:
            if sample.name == name and label in sample.labels.values():
                return float(sample.value)
    raise AssertionError(f"no {name} for {label}")


@pytest.fixture
async def overfilled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CITY_TOKEN", "city-token-0123456789")
    doc = {
        "storage": {"max_bytes": "400KiB", "when_full": "drop_oldest", "flush_max_items": 2000},
        # port 9: nothing answers, so the sink delivers nothing
        "upstream": [sink("http://127.0.0.1:9/ingest", retry={"initial": "1s", "max": "5s"})],
        "consumers": [{"id": "city", "token_env": "CITY_TOKEN"}],
    }
    async with running_site(tmp_path, doc, web=False) as rt:
        t = time.time()
        for i in range(40):
            rt.hub.ingest([Reading(t + n * 1e-3, f"d{i}.kw", float(n)) for n in range(1000)])
            await rt.journal.flush()
        await until(lambda: rt.journal.counters["dropped_oldest"] > 0, timeout=30, what="a drop_oldest")
        # the burst's report is the last record written: the journal holds still from then on
        await until(
            lambda: any(r.get("kind") == "buffer_drop" for r in rt.journal.tail(5)),
            timeout=30,
            what="the buffer_drop event",
        )
        await rt.journal.flush()
        yield rt


async def test_the_sink_backlog_counts_only_what_the_journal_still_holds(overfilled: Any) -> None:
    rt = overfilled
    comp = rt.components["sync"]
    s = comp.sinks["central"]
    status = comp.status()["sinks"][0]
    left = held_after(rt, s.cursor)
    assert rt.journal.committed_seq - s.cursor > left  # some were dropped before delivery
    assert status["backlog_rows"] == left, (status["backlog_rows"], left)
    assert gauge(list(metrics.families(comp.status())), "edge_sink_backlog_rows", "central") == left
    first = rt.journal.first_at_or_after(s.cursor + 1)
    assert status["oldest_unsent_age_s"] >= 0 and first is not None


async def test_a_consumer_cursor_counts_only_what_it_can_still_fetch(overfilled: Any) -> None:
    rt = overfilled
    cursor = rt.journal.get_cursor("city") or 0
    rows, oldest = rt.journal.unsent(cursor, rt.journal.committed_seq)
    assert rows == held_after(rt, cursor) < rt.journal.committed_seq - cursor
    first = rt.journal.first_at_or_after(cursor + 1)
    assert first is not None and oldest == first[1]
    # a cursor at the end, or past what was committed, has nothing to fetch
    assert rt.journal.unsent(rt.journal.committed_seq, rt.journal.committed_seq) == (0, None)


async def test_the_consumer_backlog_metric_counts_only_what_it_can_still_fetch(overfilled: Any) -> None:
    rt = overfilled
    comp = rt.components["sync"]
    left = held_after(rt, rt.journal.get_cursor("city") or 0)
    consumer = next(c for c in comp.status()["consumers"] if c["id"] == "city")
    assert consumer["backlog_rows"] == left
    assert gauge(list(metrics.families(comp.status())), "edge_consumer_backlog_rows", "city") == left
