"""A point named `time` (a valid point id) reaches a real InfluxDB 1.x, which refuses a field of
that name, as the field `time_`."""

from __future__ import annotations

import time
from pathlib import Path

from edge.model import Reading
from tests.support.site import running_site
from tests.support.waiting import until, until_async
from tests.sync.test_influx import Influx, influx  # noqa: F401  (the fixture)


async def test_a_point_named_time_is_written_as_time_(tmp_path: Path, influx: Influx) -> None:  # noqa: F811
    await until_async(influx.ping, 30, what="influxd to answer /ping")
    await influx.query("CREATE DATABASE tf")
    doc = {
        "upstream": [
            {
                "id": "tsdb",
                "type": "influxdb",
                "url": influx.url,
                "database": "tf",
                "batch": {"max_items": 100, "max_age": "50ms"},
                "include": {"events": False},
            }
        ]
    }
    t0 = float(int(time.time()) - 60)
    async with running_site(tmp_path, doc, web=False) as rt:
        rt.hub.ingest([Reading(t0 + k, "clock.time", float(k)) for k in range(3)])
        rt.hub.ingest([Reading(t0, "clock.times", 9.0)])  # only the name `time` itself is renamed
        committed = await rt.journal.flush()
        sink = rt.components["sync"].sinks["tsdb"]
        await until(lambda: sink.cursor >= committed, 30, what="the sink to deliver")
        assert sink.dead_letters_total == 0 and sink.failures == 0, sink.last_error
    got = await influx.query("SELECT time_, times FROM clock ORDER BY time", "tf", epoch="s")
    assert got["results"][0]["series"][0]["values"] == [
        [int(t0), 0.0, 9.0],
        [int(t0) + 1, 1.0, None],
        [int(t0) + 2, 2.0, None],
    ]
