"""Events of one series at one timestamp against a real InfluxDB 1.x: the alerts one Modbus poll
fires (one timestamp for every point of the poll) all arrive, none overwriting another."""

from __future__ import annotations

import time
from pathlib import Path

from edge.model import Reading
from edge.sync.influx_sink import SCALE
from tests.support.site import running_site
from tests.support.waiting import until, until_async
from tests.sync.test_influx import Influx, influx  # noqa: F401  (the fixture)

PRECISIONS = ("ns", "ms", "s")

RULES = """rules:
  - id: overvoltage
    when: meter-1.voltage_*
    if: value > 250
    severity: warning
    then:
      - alert: "{point} overvoltage {value:.0f} V"
"""


async def test_alerts_of_one_poll_all_reach_influx(tmp_path: Path, influx: Influx) -> None:  # noqa: F811
    """Three alerts at one time and a fourth one millisecond later, to one sink per precision:
    each reads back with its own seq, in seq order, at its time or the next free units after it."""

    await until_async(influx.ping, 30, what="influxd to answer /ping")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "volts.yaml").write_text(RULES)
    upstream = []
    for p in PRECISIONS:
        await influx.query(f"CREATE DATABASE ev_{p}")
        upstream.append(
            {
                "id": f"tsdb-{p}",
                "type": "influxdb",
                "url": influx.url,
                "database": f"ev_{p}",
                "precision": p,
                "batch": {"max_items": 500, "max_age": "100ms"},
            }
        )
    phases = ("a", "b", "c", "n")
    doc = {
        "devices": [
            {
                "id": "meter-1",
                "driver": "sim",
                "points": [{"name": f"voltage_{ph}", "interval": "1h"} for ph in phases],
            }
        ],
        "rules": {"packs": ["rules/volts.yaml"]},
        "upstream": upstream,
    }
    async with running_site(tmp_path, doc, web=False) as rt:
        t = float(int(time.time()) - 60) + 0.25  # mid-second: no unit boundary near it
        # one poll of a three-phase meter (one timestamp), then the neutral 1 ms later
        rt.hub.ingest(
            [Reading(t, f"meter-1.voltage_{ph}", 261.0 + k) for k, ph in enumerate(phases[:3])]
            + [Reading(t + 0.001, "meter-1.voltage_n", 270.0)]
        )

        def alerts() -> list[dict]:  # type: ignore[type-arg]
            return [r for r in rt.journal.tail(200) if r.get("kind") == "alert"]

        await until(lambda: len(alerts()) == 4, 10, what="four alerts in the journal")
        journaled = sorted(alerts(), key=lambda r: r["seq"])
        assert len({r["ts"] for r in journaled[:3]}) == 1  # the collision this is about
        committed = await rt.journal.flush()
        sinks = rt.components["sync"].sinks
        await until(
            lambda: all(s.cursor >= committed for s in sinks.values()), 30, what="every sink to deliver"
        )
        status = {p: sinks[f"tsdb-{p}"].status() for p in PRECISIONS}
    seqs = [r["seq"] for r in journaled]
    for p in PRECISIONS:
        assert status[p]["failures"] == 0 and status[p]["dead_letters"] == 0, (p, status[p])
        res = await influx.query("SELECT seq, payload FROM events WHERE kind='alert'", f"ev_{p}", epoch="ns")
        values = res["results"][0]["series"][0]["values"]
        assert [v[1] for v in values] == seqs, (p, values)  # every alert, in seq order
        unit = 1_000_000_000 // SCALE[p]
        times = [v[0] for v in values]
        start = round(t * SCALE[p]) * unit
        if p == "s":  # all four in one second: that second and the three after it
            assert times == [start + k * unit for k in range(4)], (p, times)
            assert status[p]["events_shifted"] == 3
        else:  # the three of the poll in three consecutive units; the fourth at its own time,
            assert times[:3] == [start + k * unit for k in range(3)], (p, times)
            late = round((t + 0.001) * SCALE[p]) * unit
            if p == "ms":  # or, at ms, the unit after the third (its own was taken)
                assert times[3] == start + 3 * unit == late + 2 * unit, (p, times)
                assert status[p]["events_shifted"] == 3
            else:
                assert times[3] == late, (p, times)
                assert status[p]["events_shifted"] == 2
        for v, r in zip(values, journaled, strict=True):
            assert r["payload"]["message"] in v[2], (p, v)
