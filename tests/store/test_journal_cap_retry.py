"""A journal at `max_bytes` under `when_full=drop_newest` refuses the tail of a batch before it
inserts; when that commit then fails (its seqs taken by another writer, a record no commit can
take, a key store that does not open), only what the cap kept is retried or split. Every record
appended is committed once or counted as dropped once, never both and never twice, and the
cap never refuses the journal's own events."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from edge.model import Reading, Record
from edge.store.journal import DROPPED_UNWRITABLE, Journal
from tests.store.helpers import open_journal, sql
from tests.store.test_journal_poison import Sealer
from tests.support.waiting import until

N = 2000  # records of the batch that meets the cap and a failure
MAX_BYTES = 400_000


def batch(t: float) -> list[Record]:
    return [Reading(t + i, f"new.p{i % 50}", float(i)) for i in range(N)]


async def at_the_cap(j: Journal, t: float) -> None:
    """Fill the journal until the cap refuses records."""
    n = 0
    while j.counters["dropped_newest"] == 0:
        assert n < 200_000, "the cap never refused"
        j.append([Reading(t + n + i, f"old.p{i % 50}", float(i)) for i in range(2000)])
        n += 2000
        await j.flush()


def committed_values(j: Journal) -> list[float]:
    """The values of the batch's committed readings, in seq order (the sensitive one's is sealed
    and does not open without the sealer registered for reads: it was 0.0)."""
    rows = sql(j, "SELECT point, value FROM journal WHERE point LIKE 'new.%' ORDER BY seq")
    return [0.0 if point == "new.bp" else value for point, value in rows]


def persisted(path: str) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {name: int(value) for name, value in conn.execute("SELECT name, value FROM counters")}
    finally:
        conn.close()


def take_next_seqs(j: Journal) -> None:
    """Another writer appends a row at the file's next seq (a tool writing to the file): the
    journal's next commit finds its seqs taken."""
    conn = sqlite3.connect(j.path, isolation_level=None, timeout=30)
    try:
        conn.execute(
            "INSERT INTO journal(seq, ts, point, kind, severity, payload) VALUES "
            "((SELECT max(seq) FROM journal) + 1, ?, 'other', 'note', 'info', '{}')",
            (time.time(),),
        )
    finally:
        conn.close()


class Classes:
    """The hub's classes: one sensitive point among the batch's."""

    def __init__(self) -> None:
        self.private_ranks: Mapping[str, int] = {"new.bp": 2}
        self.points: Mapping[str, Any] = {}


POISON = Reading(0.0, "new.odd", [1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("failure", ["seqs taken", "a record no commit can take", "key store locked"])
async def test_a_failed_commit_at_the_cap_retries_only_what_the_cap_kept(
    tmp_path: Path, failure: str
) -> None:
    t = time.time()
    kw: dict[str, Any] = {}
    sealer = None
    if failure == "key store locked":
        sealer = Sealer()
        kw.update(classes=Classes(), sealer=sealer)
    j = open_journal(tmp_path, max_bytes=MAX_BYTES, when_full="drop_newest", flush_max_items=N, **kw)
    try:
        await at_the_cap(j, t)
        await j.flush()
        base = dict(j.counters)
        records = batch(t + 1e6)
        unwritable = 0
        if failure == "seqs taken":
            take_next_seqs(j)
        elif failure == "a record no commit can take":
            records[0] = POISON._replace(ts=t + 1e6)
            unwritable = 1
        else:
            assert sealer is not None
            records[0] = Reading(t + 1e6, "new.bp", 0.0)  # a sensitive point: sealed
            sealer.locked.set()
        j.append(records)
        if sealer is not None:
            await until(lambda: j.write_errors > base["write_errors"] + 1, timeout=20, what="a retry")
            sealer.locked.clear()

        def accounted() -> int:
            dropped = j.counters["dropped_newest"] - base["dropped_newest"]
            refused = j.counters[DROPPED_UNWRITABLE] - base[DROPPED_UNWRITABLE]
            return len(committed_values(j)) + dropped + refused

        await until(
            lambda: not j.failing and j.pending == 0 and accounted() >= N,
            timeout=30,
            what="the batch committed or counted",
        )
        await j.flush()
        assert j.write_errors > base["write_errors"]  # the commit at the cap did fail
        values = committed_values(j)
        dropped = j.counters["dropped_newest"] - base["dropped_newest"]
        assert dropped > 0 and values  # the cap refused a tail and kept a head
        # a head of the batch, in order, each record once; the rest counted as dropped once
        first = unwritable  # the poison record is the batch's first
        assert values == [float(i) for i in range(first, first + len(values))]
        assert j.counters[DROPPED_UNWRITABLE] - base[DROPPED_UNWRITABLE] == unwritable
        assert first + len(values) + dropped == N
        if sealer is not None:
            assert sql(j, "SELECT count(*) FROM journal WHERE point = 'new.bp'") == [(1,)]
        # the journal's own events are never refused by the cap: the unwritable record's report
        if unwritable:
            await until(
                lambda: (
                    sql(
                        j,
                        "SELECT count(*) FROM journal WHERE kind = 'buffer_drop' AND payload LIKE "
                        "'%unwritable%'",
                    )
                    == [(1,)]
                ),
                timeout=20,
                what="the unwritable record reported",
            )
        counters = dict(j.counters)
    finally:
        await j.close()
    on_file = persisted(j.path)
    for name in ("dropped_newest", DROPPED_UNWRITABLE):
        assert on_file.get(name, 0) == counters[name]
