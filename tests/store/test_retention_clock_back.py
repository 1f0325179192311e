"""Retention after the wall clock was ahead and was set back, on real journal files driven by a test
clock: records stamped in the future while the clock was ahead, or stamped young by a clock that
was wrong, never keep personal and sensitive records committed after them past their retention.
Seq order is commit order, so every record committed before one past its retention is at least as
old: they go together, counted as `retention_expired` and reported in its event."""

from __future__ import annotations

from pathlib import Path

import orjson

from edge.model import Reading
from edge.store.journal import Journal
from tests.store.helpers import sql
from tests.store.test_retention_privacy import DAY, START, FakeClock, journal, one_of_each, passes
from tests.support.waiting import until

HOUR = 3600.0


def private_left(j: Journal) -> list[tuple[str, float]]:
    return sql(j, "SELECT point, ts FROM journal WHERE privacy > 0 AND kind IS NULL ORDER BY seq")


def expired_events(j: Journal) -> dict[str, dict[str, object]]:
    rows = sql(j, "SELECT payload FROM journal WHERE kind='retention_expired'")
    return {e["class"]: e for e in (orjson.loads(p) for (p,) in rows)}


async def test_records_stamped_while_the_clock_was_ahead_do_not_hold_later_ones(tmp_path: Path) -> None:
    clock = FakeClock()
    j = journal(tmp_path, clock, {"sensitive": "1h", "personal": "2h"})
    try:
        await j.register_cursor("central", "sink", 0)  # a sink that has fetched nothing
        j.append(one_of_each(START + 400 * DAY))  # the wall clock 400 days ahead for a while
        j.append(one_of_each(START + 10))  # set back: stamped right from here on
        j.append(one_of_each(START + 3 * HOUR - 600))  # ten minutes before the pass below
        await j.flush()
        await passes(j, clock)
        assert j.counters["retention_expired"] == 0  # nothing is past its retention yet
        clock.wall += 3 * HOUR  # three hours pass, on both clocks
        clock.mono += 3 * HOUR
        # the first two batches' personal and sensitive records (2 + 2 each): gone, as old as they are
        await until(
            lambda: j.counters["retention_expired"] == 8, what="records behind future stamps expiring"
        )
        await passes(j, clock)
        assert j.counters["retention_expired"] == 8
        assert private_left(j) == [
            ("kiosk.bp_sys", START + 3 * HOUR - 600),
            ("gate.plate", START + 3 * HOUR - 600),
        ]
        assert sql(j, "SELECT count(*) FROM journal WHERE point='meter.kw'") == [(3,)]  # public: kept
        events = expired_events(j)
        assert events["sensitive"]["count"] == 4 and events["personal"]["count"] == 4
        assert events["sensitive"]["oldest_ts"] == START + 10  # the stamps as stored, future ones too
        assert events["sensitive"]["newest_ts"] == START + 400 * DAY
    finally:
        await j.close()


async def test_a_young_stamp_in_the_past_is_kept_while_the_expired_one_behind_it_goes(tmp_path: Path) -> None:
    """The clock was ahead by less than the retention and real time has passed its stamps: the
    record looks young and sane, while one committed after it, stamped right, is past its
    retention. That one goes; the young-looking one stays until its own stamp expires (it cannot
    be told from a record of a box whose clock is behind, below), then goes too."""
    clock = FakeClock()
    j = journal(tmp_path, clock, {"sensitive": "1h", "personal": "90d"})
    try:
        await j.register_cursor("central", "sink", 0)
        j.append([Reading(START - 10 * 60, "kiosk.bp_sys", 120.0)])  # stamped 50 min ahead
        j.append([Reading(START - 3 * HOUR, "kiosk.bp_sys", 121.0)])  # stamped right, 3 h ago
        j.append([Reading(START - 5 * 60, "kiosk.bp_sys", 122.0)])  # committed last: young
        await j.flush()
        await until(lambda: j.counters["retention_expired"] == 1, what="the record behind the young stamp")
        await passes(j, clock)
        assert j.counters["retention_expired"] == 1
        assert private_left(j) == [("kiosk.bp_sys", START - 10 * 60), ("kiosk.bp_sys", START - 5 * 60)]
        clock.wall += 52 * 60  # its own stamp is past the hour now
        clock.mono += 52 * 60
        await until(lambda: j.counters["retention_expired"] == 2, what="the young stamp at its own time")
        assert private_left(j) == [("kiosk.bp_sys", START - 5 * 60)]
    finally:
        await j.close()


async def test_a_box_that_booted_with_its_clock_behind_keeps_the_records_it_holds(tmp_path: Path) -> None:
    """Records stamped right, then a restart on a box without a real-time clock stamping a day
    behind until NTP answers: the rows stamped behind look past their retention and go, but the
    rows committed before them, stamped right and young, are kept (deleting them would lose the
    whole retained history, undelivered records included)."""
    clock = FakeClock()
    j = journal(tmp_path, clock, {"sensitive": "1h", "personal": "2h"})
    try:
        await j.register_cursor("central", "sink", 0)
        recent = [Reading(START - 30 * 60 + i, "kiosk.bp_sys", float(i)) for i in range(50)]
        j.append(recent)  # the last half hour, stamped right
        j.append([Reading(START - DAY + i, "kiosk.bp_sys", float(i)) for i in range(5)])  # a day behind
        await j.flush()
        await until(lambda: j.counters["retention_expired"] == 5, what="the rows stamped a day behind")
        await passes(j, clock, 5)
        assert j.counters["retention_expired"] == 5
        assert [ts for _, ts in private_left(j)] == [r.ts for r in recent]
    finally:
        await j.close()


async def test_many_future_stamps_are_looked_past_one_bounded_window_at_a_time(tmp_path: Path) -> None:
    """More records stamped ahead than one pass looks past: passes go on from where the last one
    stopped until they reach the expired records behind them."""
    clock = FakeClock()
    j = journal(tmp_path, clock, {"sensitive": "1h", "personal": "2h"}, retention_chunk=4)
    try:
        await j.register_cursor("central", "sink", 0)
        j.append([Reading(START - 4 * HOUR + i, "kiosk.bp_sys", float(i)) for i in range(3)])
        j.append([Reading(START + 30 * DAY + i, "kiosk.bp_sys", float(i)) for i in range(100)])
        j.append([Reading(START - 3 * HOUR + i, "kiosk.bp_sys", float(i)) for i in range(10)])
        j.append([Reading(START - 60 + i, "kiosk.bp_sys", float(i)) for i in range(5)])  # young
        await j.flush()
        await until(
            lambda: j.counters["retention_expired"] == 113,
            timeout=30,
            what="every record up to the last expired one",
        )
        await passes(j, clock)
        assert j.counters["retention_expired"] == 113
        assert [ts for _, ts in private_left(j)] == [START - 60 + i for i in range(5)]
        rows = sql(j, "SELECT payload FROM journal WHERE kind='retention_expired'")
        assert sum(orjson.loads(p)["count"] for (p,) in rows) == 113  # every one reported
    finally:
        await j.close()
