"""A dry run over a real journal starts with the windows the live engine had at the range's start:
its firings are those of a replay of the whole journal restricted to the range, and the readings
before the range fill windows without being evaluated or reported."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from edge.model import Event, Reading
from edge.store.journal import Journal
from rules.model import parse_rule
from rules.replay import Replay, dry_run, journal_records

NOW = 1.75e9
SINCE = NOW - 1800
# fires on a low reading while the 10-minute average is still high: it depends on the readings
# just before it, so an empty window at the range's start cannot answer it
RULES: list[dict[str, Any]] = [
    {
        "id": "drop",
        "when": "meter.power",
        "if": "avg('meter.power', '10m') > 50 and value < 20",
        "then": [{"alert": "drop {value}"}],
    },
    {
        "id": "bin-drop",
        "when": "bin-*.fill_pct",
        "if": "avg(point, '10m') > 50 and value < 20",
        "then": [{"alert": "{device} emptied"}],
    },
]


def _records() -> list[Reading | Event]:
    recs: list[Reading | Event] = []
    for i in range(30):  # the half hour before the range: high, with one low reading that fires
        ts = SINCE - 1800 + i * 60
        v = 15.0 if i == 10 else 100.0
        recs += [Reading(ts, "meter.power", v), Reading(ts + 1, "bin-1.fill_pct", v)]
    for i in range(30):  # the range: low from its first reading on
        ts = SINCE + i * 60
        recs += [Reading(ts, "meter.power", 10.0), Reading(ts + 1, "bin-1.fill_pct", 10.0)]
    return recs


async def test_dry_run_windows_start_with_the_readings_before_the_range(tmp_path: Path) -> None:
    j = Journal(str(tmp_path / "edge.db"), keep_history=None, max_bytes=None, disk_reserve=None)
    j.open()
    try:
        j.append(_records())
        await j.flush()
        for doc in RULES:
            rule = parse_rule(doc)
            whole = Replay([rule], dt.UTC)
            whole.feed(journal_records(j, 0))
            whole.finish(NOW)
            assert any(f["ts"] < SINCE for f in whole.firings), "the pre-range low reading fires live"
            want = [
                {k: f[k] for k in ("ts", "kind", "message", "key")} for f in whole.firings if f["ts"] >= SINCE
            ]
            assert want and want[0]["ts"] < SINCE + 2 and want[0]["kind"] == "fired"

            got = dry_run(j, rule, dt.UTC, SINCE, NOW)
            assert [{k: f[k] for k in ("ts", "kind", "message", "key")} for f in got["firings"]] == want
            assert {f["privacy"] for f in got["firings"]} == {"public"}
            assert got["evaluated"] == 30  # the range's readings only: the pre-fill evaluated nothing
            assert got["prefill"]["windows"] == 1 and not got["prefill"]["truncated"]

            # without the pre-fill the first low reading is judged alone (and nothing fires)
            empty = dry_run(j, rule, dt.UTC, SINCE, NOW, max_rows=0)
            assert empty["firings"] == [] and empty["prefill"] is None
    finally:
        await j.close()
