"""A pull page's records and read counts, built the fast way, are exactly what the journal's own
`row_to_record` and the privacy module's per-record count give, on rows read from a real journal
of a running site: every value type, quality, bool flag and event shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.api import privacy
from edge.api.pull import PULL_KEY, records_of
from edge.model import Event, PointInfo, Privacy, Reading
from edge.store.journal import row_to_record
from edge.store.reader import READER_CACHE_KIB
from tests.support.site import running_site

T = 1.7e9
RECORDS = [
    Reading(T, "meter.kw", 1.5),
    Reading(T + 1, "gate.open", True, 1),
    Reading(T + 2, "gate.open", False),
    Reading(T + 3, "gate.count", 7, 2),
    Reading(T + 4, "panel.mode", "auto, eco"),
    Reading(T + 5, "kiosk.systolic", 151.0),
    Reading(T + 6, "flat.occupied", 1.0),
    Event("alert", "rules.hot", "warning", {"point": "meter.kw", "value": 41.5}, T + 7),
    Event("device_online", "meter", "info", {}, T + 8),
]
POINTS = [
    PointInfo("kiosk.systolic", "kiosk", "systolic", privacy=Privacy.SENSITIVE),
    PointInfo("flat.occupied", "flat", "occupied", privacy=Privacy.PERSONAL),
    PointInfo("meter.kw", "meter", "kw", unit="kW"),
]


# a trusted clock journals plain rows (the common, inlined case); an untrusted one flags each row
@pytest.mark.parametrize("trust_unsynced", [True, False])
async def test_page_records_and_counts_match_the_per_record_path(
    tmp_path: Path, trust_unsynced: bool
) -> None:
    async with running_site(tmp_path, {"clock": {"trust_unsynced": trust_unsynced}}) as rt:
        rt.hub.register_points(POINTS)
        rt.journal.append(RECORDS)
        end = await rt.journal.flush()
        svc: Any = rt.web_runner.app[PULL_KEY]
        rows = svc.reader.read_rows(end - len(RECORDS), 100)
        assert len(rows) == len(RECORDS)
        records = records_of(rows)
        assert records == [row_to_record(r) for r in rows]
        assert [type(r["value"]) for r in records[:4]] == [float, bool, bool, int]
        # a page of readings only (counted per point) and a mixed one (per record)
        readings = [r for r in rows if r[5] is None]
        for page in (readings, rows):
            items = records_of(page)
            assert svc.read_counts(page, items) == privacy.count_records(rt, items)
        assert svc.read_counts(readings, records_of(readings)) == {"sensitive": 1, "personal": 1}


async def test_a_readers_page_cache_is_capped(tmp_path: Path) -> None:
    """Sink and pull readers page forward through rows read once: SQLite's default 2 MB cache per
    connection would hold pages never read again for as long as the gateway runs."""
    async with running_site(tmp_path, {"devices": []}) as rt:
        svc: Any = rt.web_runner.app[PULL_KEY]
        assert svc.reader._query("PRAGMA cache_size") == [(-READER_CACHE_KIB,)]
        assert READER_CACHE_KIB <= 512
