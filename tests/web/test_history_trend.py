"""Long trends through the history API of a real runtime: `resolution=auto` answers minute or hour
buckets from the trend index when the raw journal scan cannot reach back far enough, `raw`,
`minute` and `hour` on request, the newest readings not rolled up yet are in their bucket exactly
once, bad parameters are a 400, and a viewer is refused a personal point at every resolution."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge.model import Reading
from edge.web import ui_api
from tests.store.helpers import sql
from tests.support.site import running_site
from tests.web.conftest import Client, make_user

SITE = """
site: {id: trend-test, name: 趋势, timezone: Asia/Shanghai}
devices:
  - id: meter
    driver: sim
    points:
      - {name: power_kw, signal: constant, value: 5, interval: 1h, unit: kW}
      - {name: occupant_count, type: int, signal: constant, value: 1, interval: 1h, privacy: personal}
"""
POINT = "meter.power_kw"
DAY = 86400.0


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Any]:
    async with running_site(tmp_path, SITE) as rt:
        yield rt


async def day_of_readings(rt: Any, point: str = POINT) -> list[Reading]:
    """A reading every 30 s over the last 24 h, plus bad ones that must not count; committed and
    rolled up."""
    now = time.time()
    good = [Reading(now - DAY + i * 30, point, float(i % 100), 0) for i in range(int(DAY / 30))]
    rt.hub.ingest([*good, Reading(now - 100, point, 1e6, 1)])
    await rt.journal.flush()
    await rt.components["trend"].caught_up()
    return good


def buckets_of(readings: list[Reading], width: int) -> dict[int, tuple[float, float, float]]:
    acc: dict[int, list[float]] = {}
    for r in readings:
        acc.setdefault(math.floor(r.ts / width), []).append(float(r.value))  # type: ignore[arg-type]
    return {k: (sum(v) / len(v), min(v), max(v)) for k, v in acc.items()}


def journal_buckets(
    rt: Any, point: str, width: int, since: float = 0.0
) -> dict[int, tuple[float, float, float]]:
    """Every good reading of the point in the journal (the sim's own included) from the minute of
    `since` on, bucketed here: the API's buckets start at that minute (the trend index's minutes
    are what it sums into hours), so the oldest hour holds the readings from there."""
    rows = sql(
        rt.journal,
        "SELECT ts, value FROM journal WHERE point = ? AND kind IS NULL AND quality & 3 = 0 AND ts >= ?",
        (point, math.floor(since / 60) * 60),
    )
    return buckets_of([Reading(ts, point, value) for ts, value in rows], width)


def check_buckets(body: dict[str, Any], rt: Any, since: float, width: int) -> None:
    """The answer's buckets are the journal's newest ones in the range, to the value."""
    assert len(body["readings"]) == len(body["ranges"])
    got = {}
    for (ts, avg, quality), (lo, hi) in zip(body["readings"], body["ranges"], strict=True):
        assert quality == "good" and ts % width == width / 2, "ts is the bucket's middle"
        got[math.floor(ts / width)] = (avg, lo, hi)
    want = journal_buckets(rt, POINT, width, since)
    assert list(got) == sorted(want)[-len(got) :]
    for k, (avg, lo, hi) in got.items():
        assert (lo, hi) == want[k][1:]
        assert avg == pytest.approx(want[k][0])


async def test_auto_answers_buckets_for_a_day_the_raw_scan_cannot_reach(
    site: Any, admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui_api, "SCAN_ROWS", 500)  # as on a busy site: the scan covers minutes
    await day_of_readings(site)
    since = time.time() - DAY
    hourly = await admin.json("GET", f"/api/v1/history?point={POINT}&since={since}")
    assert hourly["resolution"] == "hour", "1441 minutes exceed the default limit of 1000"
    assert 24 <= len(hourly["readings"]) <= 25
    check_buckets(hourly, site, since, 3600)

    minutes = await admin.json("GET", f"/api/v1/history?point={POINT}&since={since}&limit=2000")
    assert minutes["resolution"] == "minute"
    assert 1438 <= len(minutes["readings"]) <= 1441
    check_buckets(minutes, site, since, 60)

    raw = await admin.json("GET", f"/api/v1/history?point={POINT}&since={since}&resolution=raw&limit=5000")
    assert raw["resolution"] == "raw" and "ranges" not in raw
    assert len(raw["readings"]) <= 500, "raw stays bounded by the scan"

    short = await admin.json("GET", f"/api/v1/history?point={POINT}&since={time.time() - 600}")
    assert short["resolution"] == "raw", "ten minutes the scan covers are raw readings"
    assert {q for _ts, _v, q in short["readings"]} == {"good", "bad"}


async def test_explicit_resolutions_and_the_range(site: Any, admin: Client) -> None:
    good = await day_of_readings(site)
    now = time.time()
    since, until = now - 6 * 3600, now - 3 * 3600
    q = f"/api/v1/history?point={POINT}&since={since}&until={until}"
    inside = [r for r in good if since <= r.ts <= until]
    hours = await admin.json("GET", q + "&resolution=hour")
    assert hours["resolution"] == "hour" and hours["until"] == until

    def overlapping(width: int) -> set[int]:  # buckets that overlap [since, until]
        lo, hi = math.floor(since / width), math.floor(until / width)
        return {k for k in buckets_of(good, width) if lo <= k <= hi}

    assert {math.floor(ts / 3600) for ts, _v, _q in hours["readings"]} == overlapping(3600)
    minutes = await admin.json("GET", q + "&resolution=minute")
    assert {math.floor(ts / 60) for ts, _v, _q in minutes["readings"]} == overlapping(60)
    newest = await admin.json("GET", q + "&resolution=minute&limit=10")
    assert [r[0] for r in newest["readings"]] == [r[0] for r in minutes["readings"][-10:]]
    raw = await admin.json("GET", q + "&resolution=raw&limit=5000")
    assert [r[0] for r in raw["readings"]] == [r.ts for r in inside]


async def test_readings_not_rolled_up_yet_are_in_their_minute_once(site: Any, admin: Client) -> None:
    trend = site.components["trend"]
    await day_of_readings(site)
    now = time.time()
    minute = math.floor(now / 60)
    fresh = [Reading(minute * 60 + (now % 60) * k / 10, POINT, 1000.0 + k, 0) for k in range(10)]
    site.hub.ingest(fresh)
    await site.journal.flush()
    for attempt in range(2):  # before the follower has them (most likely), and after
        body = await admin.json("GET", f"/api/v1/history?point={POINT}&since={minute * 60}&resolution=minute")
        (ts, avg, _q), (lo, hi) = body["readings"][-1], body["ranges"][-1]
        want_avg, want_lo, want_hi = journal_buckets(site, POINT, 60)[minute]
        assert ts == minute * 60 + 30 and (lo, hi) == (want_lo, want_hi) and hi == 1009.0
        assert avg == pytest.approx(want_avg), f"attempt {attempt}: a reading counted twice or missed"
        await trend.caught_up()


async def test_bad_parameters_are_400(site: Any, admin: Client) -> None:
    base = f"/api/v1/history?point={POINT}"
    for query in (
        "&resolution=second",
        "&resolution=HOUR",
        "&since=100&until=50",
        "&until=nan",
        "&until=inf",
        "&until=tomorrow",
        "&limit=many",
    ):
        resp = await admin.request("GET", base + query)
        assert resp.status == 400, (query, resp.status, await resp.text())
    for query in ("&since=-1e300&until=1e300&resolution=hour", "&since=0&until=1e300&resolution=minute"):
        body = await admin.json("GET", base + query)
        assert body["resolution"] in ("minute", "hour")


async def test_a_viewer_is_refused_a_personal_point_at_every_resolution(site: Any, admin: Client) -> None:
    await day_of_readings(site, "meter.occupant_count")
    viewer = await make_user(admin, site, "wang", "viewer")
    try:
        for res in ("auto", "raw", "minute", "hour"):
            q = f"/api/v1/history?point=meter.occupant_count&since={time.time() - DAY}&resolution={res}"
            resp = await viewer.request("GET", q)
            assert resp.status == 403, (res, resp.status)
            assert (await admin.json("GET", q))["readings"]
        assert (await viewer.json("GET", f"/api/v1/history?point={POINT}&resolution=hour"))["readings"]
    finally:
        await viewer.close()


async def test_status_lists_the_trend_index(site: Any, admin: Client) -> None:
    await day_of_readings(site)
    status = (await admin.json("GET", "/api/v1/status"))["components"]["trend"]
    assert status["cursor"] > 2000 and status["lag_rows"] >= 0 and status["last_rollup"]
    assert {"buckets", "trimmed", "last_error"} <= set(status)
