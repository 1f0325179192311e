"""InfluxDB timestamps are the record's time truncated to the unit of `precision` (as Telegraf
writes them), read back from a real InfluxDB 1.x and compared exactly."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from pathlib import Path

from edge.model import Reading
from edge.sync.influx_sink import SCALE
from tests.support.site import running_site
from tests.support.waiting import until, until_async
from tests.sync.test_influx import Influx, influx  # noqa: F401  (the fixture)

MIDNIGHT = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()
# the times as written in decimal: each precision's unit of these is what must arrive
STAMPS = (
    repr(MIDNIGHT - 0.4),  # 23:59:59.6 is still the day before, at every precision
    repr(MIDNIGHT + 3.1236),  # rounding would give .124 at ms
    "1082083438.317",  # x 1000 is 1082083438316.9999 in floating point: still .317 ms
    "1079529690.417626",  # x 1e6 is a hair below its microsecond likewise
    repr(MIDNIGHT + 7.9999996),
)
PRECISIONS = ("s", "ms", "us")


async def test_timestamps_are_truncated_to_the_unit(tmp_path: Path, influx: Influx) -> None:  # noqa: F811
    await until_async(influx.ping, 30, what="influxd to answer /ping")
    upstream = []
    for p in PRECISIONS:
        await influx.query(f"CREATE DATABASE t_{p}")
        upstream.append(
            {
                "id": f"tsdb-{p}",
                "type": "influxdb",
                "url": influx.url,
                "database": f"t_{p}",
                "precision": p,
                "batch": {"max_items": 100, "max_age": "50ms"},
                "include": {"events": False},
            }
        )
    async with running_site(tmp_path, {"upstream": upstream}, web=False) as rt:
        # one point per stamp: no two share a unit at any precision
        rt.hub.ingest([Reading(float(s), f"meter.p{k}", float(k)) for k, s in enumerate(STAMPS)])
        committed = await rt.journal.flush()
        sinks = rt.components["sync"].sinks
        await until(
            lambda: all(s.cursor >= committed for s in sinks.values()), 30, what="every sink to deliver"
        )
        assert all(s.failures == 0 and s.dead_letters == 0 for s in sinks.values())
    for p in PRECISIONS:
        scale = SCALE[p]
        doc = await influx.query("SELECT * FROM meter", f"t_{p}", epoch="ns")
        series = doc["results"][0]["series"][0]
        got = {}
        for row in series["values"]:
            for col, v in zip(series["columns"], row, strict=True):
                if col.startswith("p") and v is not None:
                    got[col] = row[0]
        want = {
            f"p{k}": math.floor(Decimal(s) * scale) * (1_000_000_000 // scale) for k, s in enumerate(STAMPS)
        }
        assert got == want, p
