"""`edge kpi rebuild --day` of a day whose start state was not saved: the gateway's and each
device's state at the day's start come from their last events before it, so a device offline
across midnight is unavailable from the day's start, as the live fold counted it."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

import pytest

from edge.kpi.offline import OfflineKpi
from edge.model import Event, Quality, Reading
from edge.store.journal import Journal
from tests.support.site import load

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
SITE_ID = "kpi-seed"


def at(day: str, h: int = 0, m: int = 0) -> float:
    d = dt.date.fromisoformat(day)
    return dt.datetime(d.year, d.month, d.day, h, m, tzinfo=TZ).timestamp()


SITE: dict[str, Any] = {
    "site": {"id": SITE_ID, "name": "KPI", "timezone": "Asia/Shanghai"},
    "kpi": {},
    "devices": [
        {"id": "a", "driver": "sim", "points": [{"name": "v", "signal": "random", "interval": "10s"}]},
        {
            "id": "b",
            "driver": "sim",
            "points": [{"name": "w", "signal": "constant", "value": 1, "interval": "10s", "deadband": 0.5}],
        },
    ],
}


async def write_journal(path: str) -> None:
    """Two nights: `a` offline 23:30-00:30 across the midnight into 2026-12-01; `b` reports only
    on change, its one good value before that midnight."""
    journal = Journal(path, keep_history=None, max_bytes=None, disk_reserve=None).open()
    t0, end = at("2026-11-30", 22), at("2026-12-02", 2)
    off, on = at("2026-11-30", 23, 30), at("2026-12-01", 0, 30)
    records: list[Any] = [Event("gateway_started", SITE_ID, "info", {}, t0), Reading(t0 + 1, "b.w", 1.0)]
    t = t0
    while t < end:
        if t == off:
            records.append(
                Event("device_state", "a", "warning", {"state": "offline", "previous": "online"}, t)
            )
        if t == on:
            records.append(Event("device_state", "a", "info", {"state": "online", "previous": "offline"}, t))
        good = not off <= t < on
        records.append(
            Reading(t, "a.v", float(t % 100) if good else None, Quality.GOOD if good else Quality.STALE)
        )
        t += 10
    records.append(Event("gateway_stopped", SITE_ID, "info", {}, end + 5))
    journal.append(records)
    await journal.flush()
    await journal.close()


async def test_rebuild_without_a_saved_day_start_seeds_the_states_from_the_events_before(
    tmp_path: Path,
) -> None:
    site = load(tmp_path, SITE)
    await write_journal(site.storage.path)
    kpi = OfflineKpi(site)
    try:
        assert kpi.store.day_start("2026-12-01") is None
        figures = kpi.rebuild("2026-12-01")
    finally:
        kpi.close()
    devices = {d["id"]: d for d in figures["devices"]}
    assert devices["a"]["observed_s"] == pytest.approx(86400)
    assert devices["a"]["availability"] == pytest.approx((86400 - 1800) / 86400, abs=1e-6)
    # b's value was good before the day and never changed: good all day, not 0
    assert devices["b"]["availability"] == 1.0 and devices["b"]["completeness"] == 1.0
    assert figures["gateway"]["observed_s"] == pytest.approx(86400) and figures["gateway"]["down_s"] == 0
