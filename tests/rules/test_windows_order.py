"""Rule windows are right when readings arrive out of timestamp order (the gateway's clock stepped
back: drivers stamp readings with it and the hub does not reorder). A window ends at the latest
time it has seen and holds the readings of the last W before that end, wherever they arrived.
Through a running gateway, through `edge rules test` on a records file, and a window checked
against a brute-force computation over random in-order and out-of-order sequences."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import yaml

from edge.model import Event, Reading
from rules.windows import Window
from tests.support.cli import edge_cli
from tests.support.site import running_site
from tests.support.waiting import until

# seconds after a start S: 10@0, 20@100, then the clock steps back 50 s: 30@50, 1@55 ... 1@115
STEP_BACK = [(0.0, 10.0), (100.0, 20.0), (50.0, 30.0)] + [(55.0 + 5 * i, 1.0) for i in range(13)]
# at 115 the last minute is [55, 115]: 20@100 and the thirteen 1s; 30@50 and 10@0 are outside it
LAST_MAX, LAST_COUNT, LAST_SUM = 20.0, 14, 20.0 + 13

TRACK = {
    "id": "track",
    "when": "d.t",
    "notify": "always",
    "then": [
        {"set": {"point": "site.win_max", "expr": "max(point, '1m')"}},
        {"set": {"point": "site.win_n", "expr": "count(point, '1m')"}},
        {"set": {"point": "site.win_avg", "expr": "avg(point, '1m')"}},
    ],
}
MX = {
    "id": "mx",
    "when": "d.t",
    "if": "max(point, '1m') >= 15",
    "notify": "always",
    "then": [{"event": {"kind": "mx", "message": "max>=15"}}],
}
# holds while the late 30@50 is in the window: from its arrival until the end passes 110
MX30 = {
    **MX,
    "id": "mx30",
    "if": "max(point, '1m') >= 25",
    "then": [{"event": {"kind": "mx30", "message": "x"}}],
}


async def test_a_clock_step_back_through_a_running_gateway(tmp_path: Path) -> None:
    site = {"devices": [], "rules": {"max_actions_per_minute": 10_000}}
    start = time.time() - 300
    async with running_site(tmp_path, site, web=False) as rt:
        sets: list[tuple[str, float, Any]] = []
        fired: list[tuple[str, float]] = []

        def collect(recs: list[Any]) -> None:
            for r in recs:
                if isinstance(r, Reading) and r.point.startswith("site.win_"):
                    sets.append((r.point, round(r.ts - start, 3), r.value))
                elif isinstance(r, Event) and r.kind in ("mx", "mx30"):
                    fired.append((r.kind, round(r.ts - start, 3)))

        rt.hub.subscribe(collect)
        comp = rt.components["rules"]
        for rule in (TRACK, MX, MX30):
            comp.put(rule, "test", "create")
        for dt_, v in STEP_BACK:
            rt.hub.ingest([Reading(start + dt_, "d.t", v)])
        await until(lambda: len(sets) == 3 * len(STEP_BACK), what="every window value set")
        await until(
            lambda: len(fired) >= 15 + 13, what="mx for every reading from 20@100 on, mx30 for 50 to 110"
        )

        # judged when each reading arrived: max >= 15 from 20@100 on, the 115 included; the late
        # 30@50 counts from its arrival (the window then ends at 100) until the end passes 110
        assert sorted(t for k, t in fired if k == "mx") == sorted(t for t, _ in STEP_BACK[1:])
        assert sorted(t for k, t in fired if k == "mx30") == [50.0 + 5 * i for i in range(13)]
        # the set actions ran after the last reading: the window of the minute up to 115
        seen = {(point, at): v for point, at, v in sets}
        assert seen[("site.win_max", 115.0)] == LAST_MAX
        assert seen[("site.win_n", 115.0)] == LAST_COUNT
        assert seen[("site.win_avg", 115.0)] == LAST_SUM / LAST_COUNT
        w = comp.engine.windows[("d.t", 60.0)]
        assert [(round(t - start), v) for t, v in w.samples] == [(55 + 5 * i, 1.0) for i in range(9)] + [
            (100, 20.0),
            (100, 1.0),
            (105, 1.0),
            (110, 1.0),
            (115, 1.0),
        ]
        assert [t for t, _ in w.samples] == sorted(t for t, _ in w.samples)
        assert (w.max(start + 115), w.count(start + 115), w.sum(start + 115)) == (
            LAST_MAX,
            LAST_COUNT,
            LAST_SUM,
        )


def test_edge_rules_test_on_a_records_file_with_a_clock_step_back(tmp_path: Path) -> None:
    start = 1_796_640_954.5
    records = tmp_path / "records.jsonl"
    records.write_text(
        "".join(
            json.dumps({"seq": i + 1, "ts": start + dt_, "type": "reading", "point": "d.t", "value": v})
            + "\n"
            for i, (dt_, v) in enumerate(STEP_BACK)
        )
    )
    pack = tmp_path / "pack.yaml"
    pack.write_text(yaml.safe_dump({"rules": [MX]}))
    out = edge_cli("rules", "test", str(pack), "--input", str(records), "--timezone", "UTC")
    assert out.returncode == 0, out.stderr
    fired = [json.loads(line) for line in out.stdout.splitlines()]
    # every reading from 20@100 on has a reading >= 15 within the minute before the window's end
    assert [(f["kind"], f["ts"] - start) for f in fired] == [("fired", dt_) for dt_, _ in STEP_BACK[1:]]


def _brute(held: list[tuple[float, float]], end: float, seconds: float) -> dict[str, float]:
    """What the window answers, by definition: the readings at or after end - seconds, by time
    (readings of the same time in arrival order)."""
    s = sorted((x for x in held if x[0] >= end - seconds), key=lambda x: x[0])
    vals = [v for _, v in s]
    if not s:
        return {"count": 0, "sum": math.nan, "avg": math.nan, "min": math.nan, "max": math.nan}
    return {
        "count": len(s),
        "sum": sum(vals),
        "avg": sum(vals) / len(s),
        "min": min(vals),
        "max": max(vals),
        "delta": vals[-1] - vals[0] if len(s) >= 2 else math.nan,
        "rate": (vals[-1] - vals[0]) / (s[-1][0] - s[0][0])
        if len(s) >= 2 and s[-1][0] > s[0][0]
        else math.nan,
    }


def _answers(w: Window, now: float) -> dict[str, float]:
    got: dict[str, float] = {
        "count": w.count(now),
        "sum": w.sum(now),
        "avg": w.avg(now),
        "min": w.min(now),
        "max": w.max(now),
    }
    if w.count(now):
        got["delta"], got["rate"] = w.delta(now), w.rate(now)
    return got


def _same(got: dict[str, float], want: dict[str, float]) -> bool:
    return got.keys() == want.keys() and all(
        (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        for a, b in ((float(got[k]), float(want[k])) for k in want)
    )


def _sequence(rng: random.Random, disorder: float) -> list[tuple[float, float, float | None]]:
    """(reading ts, value, evaluation time or None): a clock that runs forward, now and then
    stepped back by up to 40 s (`disorder` = how often), values with repeats (ties in min/max)."""
    out: list[tuple[float, float, float | None]] = []
    clock = 1.7e9
    for _ in range(rng.randrange(1, 120)):
        clock += rng.uniform(0, 4)
        if rng.random() < disorder:
            clock -= rng.uniform(0, 40)
        value = float(rng.randrange(-5, 6)) if rng.random() < 0.5 else rng.uniform(-100, 100)
        # an evaluation at the reading's time, or (another point's reading) a bit before or after
        at = None if rng.random() < 0.3 else clock + rng.choice([0.0, rng.uniform(-20, 20)])
        out.append((clock, value, at))
    return out


def test_window_matches_brute_force_in_and_out_of_order() -> None:
    rng = random.Random(20261207)
    for trial in range(1500):
        seconds = rng.choice([5.0, 30.0, 60.0])
        disorder = 0.0 if trial % 3 == 0 else rng.choice([0.05, 0.3, 0.8])
        w, held, end = Window(seconds), [], -math.inf
        for ts, value, at in _sequence(rng, disorder):
            w.add(ts, value)
            held.append((ts, value))
            end = max(end, ts)
            if at is not None:
                end = max(end, at)
                want, got = _brute(held, end, seconds), _answers(w, at)
                assert _same(got, want), (trial, seconds, at, got, want)
        want, got = _brute(held, end, seconds), _answers(w, end)
        assert _same(got, want), (trial, seconds, got, want)


def test_history_adopted_by_a_live_window_equals_one_window_fed_everything() -> None:
    """A rule created at run time: its live window (fed from some reading on) takes the journal's
    history (up to a later reading); the two share the readings in between."""
    rng = random.Random(7)
    for trial in range(600):
        seconds = rng.choice([5.0, 30.0, 60.0])
        seq = [(ts, v) for ts, v, _ in _sequence(rng, 0.0 if trial % 3 == 0 else 0.3)]
        live_from = rng.randrange(len(seq) + 1)
        history_to = rng.randrange(live_from, len(seq) + 1)
        whole, history, live = Window(seconds), Window(seconds), Window(seconds)
        for ts, v in seq:
            whole.add(ts, v)
        for ts, v in seq[:history_to]:
            history.add(ts, v)
        for ts, v in seq[live_from:]:
            live.add(ts, v)
        live.adopt(history)
        assert list(live.samples) == list(whole.samples), (trial, live_from, history_to)
        end = max(ts for ts, _ in seq)
        assert _same(_answers(live, end), _answers(whole, end)), trial
