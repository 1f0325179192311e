"""`retention_expired` speaks of a loss only where there is one: a personal or sensitive record
deleted at its retention counts as expired before delivery only while a sink or pull consumer
whose `max_privacy` admits its class has not fetched it. A recipient that never receives the class
is owed none of it; the KPI fold's cursor is no recipient at all. On real journal files."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from edge.model import PRIVACY_RANK, Privacy
from edge.store import retention
from edge.store.journal import Journal
from tests.store.helpers import open_journal, sql
from tests.store.test_retention_privacy import (
    DAY,
    START,
    FakeClock,
    journal,
    one_of_each,
    private_ones_expired,
    site_hub,
)

PERSONAL, SENSITIVE = PRIVACY_RANK[Privacy.PERSONAL], PRIVACY_RANK[Privacy.SENSITIVE]
BATCHES = 10  # each: one sensitive reading and event, one personal reading and snapshot, public ones


async def test_records_behind_only_the_kpi_cursor_expire_without_a_warning(tmp_path: Path) -> None:
    """The KPI fold's cursor holds the public records it has not read yet, but no personal or
    sensitive record is owed to it: a site without sinks or consumers loses nothing by law."""
    clock = FakeClock()
    j = journal(tmp_path, clock, {"sensitive": "30d", "personal": "90d"})  # public: 7 d
    try:
        await j.register_cursor("kpi", "kpi", 0)  # a fold that has read nothing yet
        await private_ones_expired(j, clock)
        assert j.counters["retention_deleted"] == 4 and j.counters["retention_expired"] == 0
        assert sql(j, "SELECT count(*) FROM journal WHERE kind='retention_expired'") == [(0,)]
        # the public ones stay for the fold
        assert sql(
            j, "SELECT point, kind FROM journal WHERE privacy=0 AND (kind IS NULL OR kind='alert')"
        ) == [
            ("meter.kw", None),
            ("rule-1", "alert"),
        ]
    finally:
        await j.close()


async def _journal_file(tmp_path: Path, cursors: Mapping[str, tuple[str, int]]) -> tuple[str, int]:
    """A journal file of BATCHES batches of every class, 100 days old, with `cursors` (name ->
    (kind, the batch it has fetched up to)); nothing deleted yet. Its path and last seq."""
    j: Journal = open_journal(
        tmp_path, keep_history=None, retention_s=dict.fromkeys(PRIVACY_RANK.values()), classes=site_hub()
    )
    try:
        ends = []
        for i in range(BATCHES):
            j.append(one_of_each(START - 100 * DAY + i))
            await j.flush()
            ends.append(j.committed_seq)
        for name, (kind, batches) in cursors.items():
            await j.register_cursor(name, kind, ends[batches - 1] if batches else 0)
        return j.path, j.committed_seq
    finally:
        await j.close()


@contextmanager
def writer(path: str) -> Iterator[sqlite3.Connection]:
    """The journal file's write connection, as the writer thread holds it, in a transaction that
    is rolled back: each case expires the same rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def expire(path: str, rank: int, last: int, receives: Mapping[str, int] | None) -> retention.ClassExpiry:
    with writer(path) as conn:
        return retention.expire_class(
            conn, rank, START - DAY, start=0, committed=last, limit=1000, now=START, receives=receives
        )


async def test_a_class_a_lagging_recipient_never_receives_is_not_owed_to_it(tmp_path: Path) -> None:
    # a city platform with the default max_privacy (personal) has fetched nothing; so has the fold
    path, last = await _journal_file(tmp_path, {"city": ("consumer", 0), "kpi": ("kpi", 0)})
    receives = {"city": PERSONAL}
    sensitive = expire(path, SENSITIVE, last, receives)
    assert (sensitive.deleted, sensitive.expired) == (2 * BATCHES, 0)  # never the city's to receive
    assert sensitive.oldest_ts is None and sensitive.newest_ts is None
    personal = expire(path, PERSONAL, last, receives)
    assert (personal.deleted, personal.expired) == (0, 2 * BATCHES)  # the city's, and it lost them


async def test_a_class_is_owed_to_the_recipients_that_receive_it_up_to_the_lowest(tmp_path: Path) -> None:
    cursors = {
        "city": ("consumer", 0),  # personal: has fetched nothing
        "lab": ("consumer", 6),  # sensitive: has 6 batches of 10
        "central": ("sink", BATCHES),  # sensitive: has everything
        "kpi": ("kpi", 0),
    }
    path, last = await _journal_file(tmp_path, cursors)
    receives = {"city": PERSONAL, "lab": SENSITIVE, "central": SENSITIVE}
    sensitive = expire(path, SENSITIVE, last, receives)
    assert (sensitive.deleted, sensitive.expired) == (2 * 6, 2 * (BATCHES - 6))
    assert sensitive.oldest_ts == START - 100 * DAY + 6
    personal = expire(path, PERSONAL, last, receives)
    assert (personal.deleted, personal.expired) == (0, 2 * BATCHES)  # the city lags: all three owe


async def test_a_recipient_not_named_is_owed_every_class(tmp_path: Path) -> None:
    """Where what a sink or consumer receives is not known, a loss is reported, not hidden."""
    path, last = await _journal_file(tmp_path, {"city": ("consumer", 0), "old-sink": ("sink", 3)})
    sensitive = expire(path, SENSITIVE, last, None)  # nothing known: both owed, the city lowest
    assert (sensitive.deleted, sensitive.expired) == (0, 2 * BATCHES)
    sensitive = expire(path, SENSITIVE, last, {"city": PERSONAL})  # the old sink, not named, is owed
    assert (sensitive.deleted, sensitive.expired) == (2 * 3, 2 * (BATCHES - 3))
