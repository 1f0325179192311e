"""A backlog older than the database's retention policy, against a real InfluxDB 1.x: InfluxDB
stores the rest of each batch and drops the old points ("points beyond retention policy"); the
sink counts them as left out for that reason, with no bisection and no dead letters."""

from __future__ import annotations

import time
from pathlib import Path

from edge.model import Reading
from tests.store.helpers import sql
from tests.support.site import running_site
from tests.support.waiting import until, until_async
from tests.sync.test_influx import Influx, influx  # noqa: F401  (the fixture)

OLD = 300  # readings from three hours ago, beyond the 1 h retention policy
NEW = 100


async def test_points_beyond_retention_are_left_out_not_dead_lettered(
    tmp_path: Path,
    influx: Influx,  # noqa: F811
) -> None:
    await until_async(influx.ping, 30, what="influxd to answer /ping")
    await influx.query("CREATE DATABASE shortrp WITH DURATION 1h")
    doc = {
        "upstream": [
            {
                "id": "tsdb",
                "type": "influxdb",
                "url": influx.url,
                "database": "shortrp",
                "batch": {"max_items": 500, "max_age": "50ms"},
                "include": {"events": False},
                "retry": {"initial": "50ms", "max": "200ms"},
            }
        ]
    }
    now = time.time()
    async with running_site(tmp_path, doc, web=False) as rt:
        sink = rt.components["sync"].sinks["tsdb"]
        old = [Reading(now - 3 * 3600 + k * 0.01, "meter.kw", float(k)) for k in range(OLD)]
        new = [Reading(now - 60 + k * 0.01, "meter.kw", float(k)) for k in range(NEW)]
        rt.hub.ingest(old + new)  # one batch holds both
        committed = await rt.journal.flush()
        await until(lambda: sink.cursor >= committed, 30, what="the sink to pass the backlog")
        status = sink.status()
        dead_letter_events = sql(rt.journal, "SELECT count(*) FROM journal WHERE kind = 'sync_dead_letter'")
    assert status["dead_letters"] == 0 and dead_letter_events == [(0,)]
    assert status["left_out"]["beyond_retention"] == OLD
    assert status["failures"] == 0  # the answer was acted on, not retried or bisected
    got = await influx.query("SELECT count(kw) FROM meter", "shortrp")
    assert got["results"][0]["series"][0]["values"][0][1] == NEW
