"""A gateway killed (`kill -9`) in the middle of a day and started again: the day's figures count
every record once, and the time it was dead counts as gateway downtime from its last record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.kpi.days import Days
from edge.kpi.store import KpiStore
from edge.state import StateDB
from tests.support.cli import answering, start_edge_run
from tests.support.ports import free_port
from tests.support.procs import stop_process, terminate
from tests.support.site import site_file
from tests.support.waiting import until_async


def folded(state_path: str) -> int:
    state = StateDB(state_path)
    try:
        found = KpiStore(state).meta("state")
        return int(found["pos"]) if found else 0
    finally:
        state.close()


async def test_a_killed_gateway_neither_loses_nor_double_counts_and_its_death_is_downtime(
    tmp_path: Path,
) -> None:
    port = free_port()
    doc = {
        "site": {"id": "kpi-crash", "name": "KPI", "timezone": "Asia/Shanghai"},
        "web": {"listen": f"127.0.0.1:{port}"},
        "kpi": {"interval": "100ms"},
        "devices": [
            {"id": "m", "driver": "sim", "points": [{"name": "p", "signal": "random", "interval": "20ms"}]}
        ],
    }
    config = site_file(tmp_path, doc)
    journal = str(tmp_path / "edge.db")
    state_path = str(tmp_path / "state.db")
    base = f"http://127.0.0.1:{port}"

    first = start_edge_run(config, tmp_path / "first.log")
    try:
        await answering(base, first)
        # killed only once the fold has committed some of the run's records
        await until_async(
            lambda: _async(Path(state_path).exists() and folded(state_path) > 50), timeout=30, what="a fold"
        )
    finally:
        stop_process(first)  # SIGKILL: no gateway_stopped, nothing flushed beyond what was committed
    second = start_edge_run(config, tmp_path / "second.log")
    try:
        await answering(base, second)
        await until_async(
            lambda: _async(folded(state_path) >= _started_seq(journal)),
            timeout=30,
            what="the fold past the restart",
        )
    finally:
        terminate(second)

    days = Days("Asia/Shanghai")
    with sqlite3.connect(journal) as conn:
        events = conn.execute(
            "SELECT seq, ts, kind FROM journal WHERE kind IN ('gateway_started', 'gateway_stopped') ORDER BY seq"
        ).fetchall()
        assert [k for _s, _t, k in events] == ["gateway_started", "gateway_started", "gateway_stopped"]
        restart_seq, restart_ts = events[1][0], events[1][1]
        last_alive = conn.execute("SELECT ts FROM journal WHERE seq = ?", (restart_seq - 1,)).fetchone()[0]
    pos = folded(state_path)
    state = StateDB(state_path)
    try:
        store = KpiStore(state)
        for day in sorted({days.day_of(t) for _s, t, _k in events}):
            start, end = days.bounds_of(day)
            with sqlite3.connect(journal) as conn:
                held = conn.execute(
                    "SELECT count(*) FROM journal WHERE ts >= ? AND ts < ? AND seq <= ?", (start, end, pos)
                ).fetchone()[0]
            found = store.day(day)
            assert found is not None and found[0]["rec"][0] == held, day
        dead = sum(
            (store.day(d) or ({"gw": {"down": 0.0}}, False, None))[0]["gw"]["down"]
            for d in {days.day_of(last_alive), days.day_of(restart_ts)}
        )
    finally:
        state.close()
    # dead from its last record before the restart (the kill) until it started again
    assert abs(dead - (restart_ts - last_alive)) < 0.01
    assert restart_ts - last_alive > 0.1  # a new process's start: the time it was dead


async def _async(value: bool) -> bool:
    return value


def _started_seq(journal: str) -> int:
    with sqlite3.connect(journal) as conn:
        row = conn.execute("SELECT max(seq) FROM journal WHERE kind = 'gateway_started'").fetchone()
    return int(row[0] or 0)
