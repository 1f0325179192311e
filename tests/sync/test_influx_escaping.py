"""Line protocol escaping against a real InfluxDB 1.x: hostile event kinds, sources, point names
and string values are stored exactly as journaled (or by the documented mapping where line
protocol cannot carry a character), never split into other lines or measurements."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge.model import Event, Reading
from tests.support.site import running_site
from tests.support.waiting import until, until_async
from tests.sync.test_influx import Influx, influx  # noqa: F401  (the fixture)

# (as journaled, as InfluxDB must hold it)
KINDS = [
    ("alarm\nevil,host=x v=1i", "alarm\\nevil,host=x v=1i"),  # a newline may not split the line
    ("C:\\alarms\\door", "C:\\alarms\\door"),  # backslashes are not escapes here
    ("ends in\\", "ends in\uff3c"),  # a final backslash would escape what follows it
    ("a,b=c d", "a,b=c d"),
    ("cr\r\ttab", "cr\\r\\ttab"),
    ("back\\,slash comma", "back\\,slash comma"),
]
STRINGS = ['line1\nline2 "quoted" C:\\dir\\', "tail\\", 'say "hi"\\n']


async def test_hostile_names_and_strings_are_stored_exactly(tmp_path: Path, influx: Influx) -> None:  # noqa: F811
    await until_async(influx.ping, 30, what="influxd to answer /ping")
    await influx.query("CREATE DATABASE esc")
    doc = {
        "upstream": [
            {
                "id": "tsdb",
                "type": "influxdb",
                "url": influx.url,
                "database": "esc",
                "precision": "ms",
                "batch": {"max_items": 100, "max_age": "50ms"},
            }
        ]
    }
    t0 = float(int(time.time()) - 60)
    async with running_site(tmp_path, doc, web=False) as rt:
        for k, (kind, _) in enumerate(KINDS):
            rt.hub.publish_event(Event(kind, "rule 1\\x", "warning", {"path": "C:\\x\n"}, t0 + k))
        rt.hub.ingest([Reading(t0 + k, "meter.note, a=b", s) for k, s in enumerate(STRINGS)])
        committed = await rt.journal.flush()
        sink = rt.components["sync"].sinks["tsdb"]
        await until(lambda: sink.cursor >= committed, 30, what="the sink to deliver")
        assert sink.dead_letters_total == 0 and sink.failures == 0, sink.last_error
    shown = await influx.query("SHOW MEASUREMENTS", "esc")
    assert sorted(v[0] for v in shown["results"][0]["series"][0]["values"]) == ["events", "meter"]
    doc_ev = await influx.query(
        f"SELECT kind, source, payload FROM events WHERE severity = 'warning' AND time >= {int(t0)}s "
        "ORDER BY time",
        "esc",
    )
    rows = doc_ev["results"][0]["series"][0]["values"]
    assert [r[1] for r in rows] == [stored for _, stored in KINDS]
    assert {r[2] for r in rows} == {"rule 1\\x"}
    assert [json.loads(r[3]) for r in rows] == [{"path": "C:\\x\n"}] * len(KINDS)
    doc_rd = await influx.query('SELECT "note, a=b" FROM meter ORDER BY time', "esc")
    assert [r[1] for r in doc_rd["results"][0]["series"][0]["values"]] == STRINGS
