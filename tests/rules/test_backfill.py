"""Windows refilled from a real journal file hold exactly what a replay of that journal holds, and
the refill evaluates nothing (no firing, no state, no timer, no latest value)."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

from edge.model import Event, Reading, Severity
from edge.store.journal import Journal
from rules.backfill import read_history, wants_of
from rules.engine import Engine
from rules.model import parse_rule
from rules.replay import Replay, journal_records
from rules.windows import Window

NOW = 1.75e9
RULES: list[dict[str, Any]] = [
    {
        "id": "avg-high",
        "when": "meter.power",
        "if": "avg('meter.power', '10m') > 50",
        "then": [{"alert": "x"}],
    },
    {
        "id": "bin-avg",
        "when": "bin-*.fill_pct",
        "if": "avg(point, '5m') > 80 and count(point, '5m') >= 3",
        "then": [{"alert": "y"}],
    },
    {
        "id": "spread",
        "when": {"schedule": "@hourly"},
        "if": "max('meter.power', '1h') - min('meter.power', '1h') > 5",
    },
]


def _journal(tmp_path: Path, records: list[Any]) -> Journal:
    j = Journal(str(tmp_path / "edge.db"), keep_history=None, max_bytes=None, disk_reserve=None)
    j.open()
    j.append(records)
    return j


def _records() -> list[Any]:
    recs: list[Any] = []
    for i in range(200):  # 100 minutes of a meter every 30 s, a bin every 30 s
        ts = NOW - 6000 + i * 30
        recs.append(Reading(ts, "meter.power", 40 + (i % 7)))
        recs.append(Reading(ts + 1, f"bin-{i % 3}.fill_pct", 70 + (i % 20) * 1.5))
        if i % 10 == 0:
            recs.append(Reading(ts + 2, "meter.power", 9999, 1))  # bad quality: feeds no window
            recs.append(Reading(ts + 2, "bin-9.fill_pct", "jammed"))  # not a number
            recs.append(Event("door", "gate", Severity.INFO, {"value": 1}, ts + 2))
    recs.append(Reading(NOW - 20, "meter.power", True))  # bools count as 1.0, as live
    return recs


def _engine() -> Engine:
    e = Engine(dt.UTC)
    e.now = NOW
    for d in RULES:
        e.add(parse_rule(d), NOW)
    return e


def _samples(w: Window) -> list[tuple[float, float]]:
    return list(w.samples)


async def test_refilled_windows_equal_a_replay_of_the_journal_and_fire_nothing(tmp_path: Path) -> None:
    j = _journal(tmp_path, _records())
    try:
        upto = await j.flush()
        e = _engine()
        history = read_history(j, wants_of(e.rules.values()), NOW, upto)
        assert not history.truncated and history.rows > 0
        assert e.fill_windows(history.windows) == len(history.windows)

        # a replay that ran over the whole journal
        rp = Replay([parse_rule(d) for d in RULES], dt.UTC)
        rp.feed(journal_records(j, 0))
        keys = {("meter.power", 600.0), ("meter.power", 3600.0)} | {
            (f"bin-{k}.fill_pct", 300.0) for k in range(3)
        }
        assert set(e.windows) == keys, set(e.windows)
        for key in keys:
            live, replayed = e.windows[key], rp.engine.windows[key]
            for fn in ("avg", "min", "max", "count", "sum", "delta", "rate"):
                assert getattr(live, fn)(NOW) == getattr(replayed, fn)(NOW), (key, fn)
        assert e.windows[("meter.power", 600.0)].count(NOW) == 21  # 20 readings + the bool
        assert e.windows[("meter.power", 600.0)].max(NOW) == 46.0  # the bad 9999 is not there

        # nothing was evaluated, fired, stored or scheduled
        assert e.evaluations == 0 and not e.dirty and not e.latest
        assert all(not rr.states and rr.last_fired is None for rr in e.rules.values())
        assert [t[4] for t in e._timers] == ["schedule"]  # only the cron armed by add()

        # the next readings are judged the same way live and in the replay; rule state comes from
        # the state database on a real restart, so the replay's is restored here
        for rid, rr in rp.engine.rules.items():
            for state_key, st in rr.states.items():
                e.restore(rid, state_key, copy.copy(st))
        for nxt in (Reading(NOW + 1, "bin-1.fill_pct", 100.0), Reading(NOW + 2, "meter.power", 500)):
            live_f = [(f.rule.id, f.key, f.kind) for f in e.process([nxt])]
            replay_f = [(f["rule"], f["key"], f["kind"]) for f in rp.feed([nxt])]
            assert live_f == replay_f
            for rid in ("avg-high", "bin-avg"):
                args = (nxt.value, None, nxt.point, *nxt.point.split("."), nxt.ts, "good") + (None,) * 4
                assert e.rules[rid].cond(args) == rp.engine.rules[rid].cond(args)  # type: ignore[misc]
        assert e.windows[("meter.power", 600.0)].avg(NOW + 2) == rp.engine.windows[
            ("meter.power", 600.0)
        ].avg(NOW + 2)
    finally:
        await j.close()


async def test_the_row_budget_keeps_the_newest_rows(tmp_path: Path) -> None:
    j = _journal(tmp_path, [Reading(NOW - 500 + i, "meter.power", float(i)) for i in range(500)])
    try:
        upto = await j.flush()
        e = _engine()
        history = read_history(j, wants_of(e.rules.values()), NOW, upto, max_rows=100)
        assert history.truncated and history.rows == 100
        e.fill_windows(history.windows)
        w = e.windows[("meter.power", 600.0)]
        assert w.count(NOW) == 100 and w.min(NOW) == 400.0 and w.max(NOW) == 499.0
    finally:
        await j.close()


async def test_history_is_bounded_by_the_longest_window(tmp_path: Path) -> None:
    old = [Reading(NOW - 90_000 + i, "meter.power", 1.0) for i in range(1000)]  # a day ago
    recent = [Reading(NOW - 100 + i, "meter.power", 2.0) for i in range(100)]
    j = _journal(tmp_path, old + recent)
    try:
        upto = await j.flush()
        history = read_history(j, wants_of(_engine().rules.values()), NOW, upto)
        assert history.rows == 100  # the day-old rows were never read, not just evicted
    finally:
        await j.close()


def test_adopt_keeps_live_samples_once() -> None:
    def window(*samples: tuple[float, float]) -> Window:
        w = Window(60)
        for ts, v in samples:
            w.add(ts, v)
        return w

    a, b, c, d = (1.0, 10.0), (2.0, 20.0), (3.0, 30.0), (4.0, 40.0)
    cases = [
        ((), (a, b, c)),  # nothing fed live yet
        ((d,), (a, b, c, d)),  # fed live after the read
        ((b, c, d), (a, b, c, d)),  # fed live before the read's cut: already in the history
        ((c,), (a, b, c)),
    ]
    for live, want in cases:
        w = window(*live)
        w.adopt(window(a, b, c))
        assert list(w.samples) == list(want), live
        assert w.sum(4.0) == sum(v for _, v in want) and w.min(4.0) == min(v for _, v in want)
