"""A page of plain readings is read by column (`JournalReader.read_plain`) and encoded from the
columns (`plain_body`): the page served must be byte for byte the one the row-by-row read and
`records_of` give, for every value the journal can hold, and any page that is not plain (events,
flagged qualities, sealed values, gaps, withheld points) must be left to the row-by-row read."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from edge.api.pull import PULL_KEY
from edge.model import Event, PointInfo, Privacy, Reading
from tests.store.helpers import sql
from tests.support.site import running_site
from tests.sync.helpers import record_plain_reads

T = 1.7e9
# floats whose shortest text needs 16-17 digits, an exponent, or a sign SQLite's own printing
# loses (it prints REALs with 15 significant digits): what made building the JSON in SQL wrong
FLOATS = [
    0.1 + 0.2,
    1e16,
    1e15,
    123456789012345680.0,
    -0.0,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    1 / 3,
    1733520000.1234567,
    1e-7,
    -2.5,
    math.inf,
    -math.inf,
    math.nan,  # stored as NULL
]
VALUES: list[Any] = [
    *FLOATS,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    "",
    "a,b",
    'quote"d',
    "back\\slash",
    "\x00\x01\x1f\x7f",
    "é中文🙂",
    "%s %d %b",
    None,
]
POINTS = ["meter.kw", 'odd"quote.p', "uni.é中", "ctl.\x01\x1f", "back\\.p", "%d.p", "comma,.p", "kw"]


def tricky_readings() -> list[Reading]:
    out = []
    for i, value in enumerate(VALUES):
        ts = FLOATS[i % 12] if i % 3 == 0 else T + i * 0.1  # finite timestamps only
        out.append(Reading(abs(ts), POINTS[i % len(POINTS)], value, i % 3))  # good, bad, stale
    return out


async def pages_both_ways(
    svc: Any, monkeypatch: pytest.MonkeyPatch, after: int, limit: int
) -> tuple[Any, Any]:
    """(the page as served, with the column read; the page the row-by-row read gives)."""
    monkeypatch.setattr(svc, "row_reads_after_miss", 0)  # each page tries the column read
    fast = svc.page("city", after, limit)
    with monkeypatch.context() as m:
        m.setattr(svc.reader, "read_plain", lambda *a: None)
        slow = svc.page("city", after, limit)
    return fast, slow


async def test_a_plain_page_is_byte_for_byte_the_row_by_row_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        rt.journal.append(tricky_readings())
        end = await rt.journal.flush()
        start = end - len(VALUES)
        svc: Any = rt.web_runner.app[PULL_KEY]
        reads = record_plain_reads(svc, monkeypatch)
        n = len(VALUES)  # pages within what this test wrote, and one far past the end (empty)
        for after, limit in [(start, n), (start, 1), (start + 3, 7), (end - 2, 2), (end + 10**6, 10)]:
            fast, slow = await pages_both_ways(svc, monkeypatch, after, limit)
            assert reads[-1] is not None  # the column read served it
            assert fast.body == slow.body, (after, limit)
            assert fast == slow  # and what the audit and the read-ahead's check go by
        whole = svc.page("city", start, n).body
        for text in (b"0.30000000000000004", b"1733520000.1234567", b"5e-324", b'"quality":"stale"'):
            assert text in whole


async def test_pages_that_are_not_plain_are_read_row_by_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        rt.hub.register_points([PointInfo("kiosk.systolic", "kiosk", "systolic", privacy=Privacy.SENSITIVE)])
        reader = rt.web_runner.app[PULL_KEY].reader
        svc: Any = rt.web_runner.app[PULL_KEY]

        async def window(records: list[Any]) -> tuple[int, int]:
            rt.journal.append([Reading(T, "meter.kw", 1.0), *records, Reading(T, "meter.kw", 2.0)])
            end = await rt.journal.flush()
            return end - len(records) - 2, len(records) + 2

        cases = {
            "event": await window([Event("device_online", "meter", "info", {}, T)]),
            "bool value (flagged quality)": await window([Reading(T, "gate.open", True)]),
            "withheld point": await window([Reading(T, "kiosk.systolic", 151.0)]),
        }
        after, n = await window([Reading(T, "meter.kw", 3.0)])
        sql(rt.journal, "DELETE FROM journal WHERE seq = ?", (after + 2,))
        cases["gap in the seqs"] = (after, n)
        after, n = await window([Reading(T, "meter.kw", 4.0)])
        sql(rt.journal, "UPDATE journal SET value = X'00ff' WHERE seq = ?", (after + 2,))
        cases["sealed value"] = (after, n)
        after, n = await window([Reading(T, "meter.kw", 5.0)])
        sql(rt.journal, "UPDATE journal SET point = X'6b77' WHERE seq = ?", (after + 2,))
        cases["point stored as a BLOB"] = (after, n)
        private = svc.shaper_for("city").personal_points()
        assert private == {"kiosk.systolic"}
        for what, (after, n) in cases.items():
            assert reader.read_plain(after, n, private) is None, what
            assert reader.read_plain(after + n - 1, 1, private) is not None, what  # the plain tail
            fast, slow = await pages_both_ways(svc, monkeypatch, after, n)
            assert fast == slow, what
        # what the row-by-row read makes of them: the event's shape, the bool, the withheld point
        _, slow = await pages_both_ways(svc, monkeypatch, cases["bool value (flagged quality)"][0], 3)
        assert b'"value":true' in slow.body
        _, slow = await pages_both_ways(svc, monkeypatch, cases["withheld point"][0], 3)
        assert b"kiosk.systolic" not in slow.body and slow.served == 2


async def test_after_a_page_that_is_not_plain_the_next_pages_skip_the_column_reads_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a stream with events nearly every page fails the check: the consumer's next pages go
    straight to the row read, and try the column read again after ROW_READS_AFTER_MISS."""
    async with running_site(tmp_path, {"devices": []}) as rt:
        svc: Any = rt.web_runner.app[PULL_KEY]
        monkeypatch.setattr(svc, "row_reads_after_miss", 2)
        rt.journal.append([Event("device_online", "meter", "info", {}, T)])
        rt.journal.append([Reading(T + i, "meter.kw", float(i)) for i in range(10)])
        end = await rt.journal.flush()
        start = end - 11
        tried = record_plain_reads(svc, monkeypatch)
        bodies = [svc.page("city", start + k, 2).body for k in range(4)]
        # the first page holds the event: a miss; the next two are read row by row; then again
        assert [x is None for x in tried] == [True, False]
        assert b"device_online" in bodies[0] and all(b"meter.kw" in b for b in bodies[1:])
        monkeypatch.setattr(svc, "row_reads_after_miss", 0)
        assert [svc.page("city", start + k, 2).body for k in range(4)] == bodies  # same either way
