"""Rule windows survive a restart: right after it, `avg(P, 10m)` holds the readings journaled before
it, so the first new reading is judged as a replay of the journal judges it, and the refill itself
fires nothing. In-process (a Runtime stopped and started again), for a rule created at run time,
and with a real `edge run` killed with SIGKILL.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path
from typing import Any

import yaml

from edge.model import Event, Reading
from edge.store.journal import Journal
from rules.model import parse_rule
from rules.replay import Replay, journal_records
from tests.rules.test_restart import _query, _start, _stop
from tests.store.helpers import sql
from tests.support.site import running_site, site_file
from tests.support.waiting import until, until_sync

AVG = "avg('meter.power', '10m')"
PACK_RULES: list[dict[str, Any]] = [
    {"id": "avg-high", "when": "meter.power", "if": f"{AVG} > 50", "then": [{"alert": "avg {value}"}]},
    {
        "id": "track",  # makes the live evaluation visible: what the window said, as a reading
        "when": "meter.power",
        "notify": "always",
        "then": [
            {"set": {"point": "site.power_avg", "expr": AVG}},
            {"set": {"point": "site.power_n", "expr": "count('meter.power', '10m')"}},
        ],
    },
    {
        "id": "few",  # fires when the window holds few readings, as an empty window after a restart would
        "when": "meter.power",
        "if": "count('meter.power', '10m') < 5",
        "then": [{"alert": "only {value} readings"}],
    },
]


def _site(tmp_path: Path, devices: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    pack = tmp_path / "pack.yaml"
    pack.write_text(yaml.safe_dump({"rules": PACK_RULES}))
    return {"devices": devices or [], "rules": {"packs": [str(pack)], "max_actions_per_minute": 10_000}}


def _replay_upto(journal: Any, seq: int) -> Replay:
    """A replay of the journal's records up to `seq` (inclusive)."""
    rp = Replay([parse_rule(d) for d in PACK_RULES], dt.UTC)
    rp.feed(r for r in _records_upto(journal, seq))
    return rp


def _records_upto(journal: Any, seq: int) -> list[Reading | Event]:
    rows = sql(journal, "SELECT count(*) FROM journal WHERE seq <= ?", (seq,))[0][0]
    return list(journal_records(journal, 0))[:rows]


async def test_window_holds_the_pre_restart_readings_and_the_refill_fires_nothing(tmp_path: Path) -> None:
    site = _site(tmp_path)
    now = time.time()
    values = [10.0 + i for i in range(8)]
    before = [Reading(now - 400 + i * 50, "meter.power", v) for i, v in enumerate(values)]
    async with running_site(tmp_path, site, web=False) as rt:
        rt.hub.ingest([Reading(now - 3600, "meter.power", 1000.0)])  # an hour ago: outside 10 m
        for r in before:
            rt.hub.ingest([r])
        await until(lambda: rt.hub.latest.get("site.power_n"), what="track ran")
        await rt.components["rules"].backfilled()
    alerts_before = [r for r in _query(tmp_path / "edge.db", "SELECT point FROM journal WHERE kind='alert'")]
    assert alerts_before == [("avg-high",), ("few",)]  # the hour-old 1000 fired both, long cleared

    async with running_site(tmp_path, site, web=False) as rt:
        comp = rt.components["rules"]
        w = comp.engine.windows[("meter.power", 600.0)]
        assert w.count(now) == 8 and w.avg(now) == sum(values) / 8
        # the refill evaluated nothing and fired nothing
        assert comp.engine.evaluations == 0 and comp.firings == 0
        status = comp.status()
        assert (
            status["window_backfill"]["runs"] == 1 and status["windows_refilled"] == 1
        )  # avg and count share it
        started_seq = _query(
            tmp_path / "edge.db", "SELECT max(seq) FROM journal WHERE kind='gateway_started'"
        )
        await rt.journal.flush()

        nxt = Reading(now + 1, "meter.power", 100.0)
        rt.hub.ingest([nxt])
        await until(
            lambda: getattr(rt.hub.latest.get("site.power_n"), "ts", None) == nxt.ts,
            what="track on the new reading",
        )
        live_avg, live_n = rt.hub.latest["site.power_avg"].value, rt.hub.latest["site.power_n"].value
        assert live_n == 9 and live_avg == (sum(values) + 100.0) / 9  # not 100: not empty

        seq = await rt.journal.flush()
        trigger = sql(
            rt.journal, "SELECT max(seq) FROM journal WHERE point='meter.power' AND seq <= ?", (seq,)
        )[0][0]
        rp = _replay_upto(rt.journal, trigger)
        replayed = rp.engine.windows[("meter.power", 600.0)]
        assert (replayed.avg(nxt.ts), replayed.count(nxt.ts)) == (live_avg, live_n)
        # neither the refill nor the new reading fired: avg 20.8 < 50, and 9 readings are not few
        new_alerts = sql(
            rt.journal, "SELECT point FROM journal WHERE kind='alert' AND seq > ?", (started_seq[0][0],)
        )
        assert new_alerts == [] and comp.firings == 1  # the one firing is `track` (notify: always)


async def test_a_rule_created_at_run_time_sees_the_journals_history(tmp_path: Path) -> None:
    now = time.time()
    async with running_site(tmp_path, {"devices": []}, web=False) as rt:
        comp = rt.components["rules"]
        for i in range(30):
            rt.hub.ingest([Reading(now - 300 + i * 10, f"bin-{i % 2}.fill_pct", float(i))])
        await rt.journal.flush()
        comp.put(
            {
                "id": "bin-avg",
                "when": "bin-*.fill_pct",
                "if": "avg(point, '10m') > 90",
                "then": [{"alert": "x"}],
            },
            "test",
            "create",
        )
        # readings that arrive while the history is read, before the journal has them: counted once
        late = [Reading(now + i, "bin-1.fill_pct", 50.0 + i) for i in range(3)]
        rt.hub.ingest(late)
        await comp.backfilled()
        w = comp.engine.windows[("bin-1.fill_pct", 600.0)]
        want = [float(i) for i in range(1, 30, 2)] + [r.value for r in late]
        assert [v for _, v in w.samples] == want
        assert comp.engine.windows[("bin-0.fill_pct", 600.0)].count(now) == 15
        assert comp.firings == 0 and not comp.engine.rules["bin-avg"].states


def test_window_survives_kill_9_of_edge_run(tmp_path: Path) -> None:
    meter = {
        "id": "meter",
        "driver": "sim",
        "points": [{"name": "power", "signal": "counter", "start": 0, "step": 1, "interval": "100ms"}],
    }
    config = site_file(tmp_path, _site(tmp_path, [meter]))
    db = tmp_path / "edge.db"

    def count(sql: str) -> int:
        rows = _query(db, sql)
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    proc = _start(config)
    try:
        until_sync(
            lambda: count("SELECT count(*) FROM journal WHERE point='meter.power'") >= 15,
            timeout=30,
            what="15 meter readings committed",
        )
        _stop(proc, signal.SIGKILL)
    finally:
        _stop(proc, signal.SIGKILL)
    before = count("SELECT count(*) FROM journal WHERE point='meter.power'")
    first_start = count("SELECT max(seq) FROM journal WHERE kind='gateway_started'")
    assert [r[0] for r in _query(db, "SELECT point FROM journal WHERE kind='alert'")] == ["few"]

    proc = _start(config)
    try:

        def first_track_after_restart() -> tuple[int, float, Any] | None:
            started = count("SELECT max(seq) FROM journal WHERE kind='gateway_started'")
            if started <= first_start:
                return None
            rows = _query(
                db,
                f"SELECT seq, ts, value FROM journal WHERE point='site.power_n' AND seq > {started} "
                "ORDER BY seq LIMIT 1",
            )
            return rows[0] if rows else None

        found = until_sync(first_track_after_restart, timeout=30, what="track after the restart")
        assert found is not None
        seq, ts, n = found
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)

    # the first reading after the restart was judged with the readings from before the kill
    assert n == before + 1, (n, before)
    journal = Journal.open_readonly(str(db))
    try:
        trigger = sql(
            journal,
            "SELECT max(seq) FROM journal WHERE point='meter.power' AND ts = ? AND seq < ?",
            (ts, seq),
        )[0][0]
        rp = _replay_upto(journal, trigger)
        replayed = rp.engine.windows[("meter.power", 600.0)]
        live_avg = sql(
            journal,
            "SELECT value FROM journal WHERE point='site.power_avg' AND seq > ? ORDER BY seq LIMIT 1",
            (trigger,),
        )[0][0]
        assert (replayed.count(ts), replayed.avg(ts)) == (n, live_avg)
    finally:
        journal.close_sync()
    # an empty window would have made `few` fire again after the restart; the refill fired nothing
    assert [r[0] for r in _query(db, "SELECT point FROM journal WHERE kind='alert'")] == ["few"]
