"""Operator KPI benchmark: computing one day's figures from the journal (the fold, chunk by chunk,
as the live component and `edge kpi rebuild` do, then the figures) beside a floor measured in the
same run: one SQL `GROUP BY point` over the same rows in raw sqlite3 (good readings and all
readings per point), fetched into Python.

    python -m bench.kpi [--quick]

Full: 1,000 points polled every 5 s over 24 h in Asia/Shanghai (17.28 M readings) on 100 sim
devices, one device going offline and back every hour; --quick: the same 1,000 points over 2 h
(1.44 M readings). The last line is one JSON object with the figures and "ratio" (fold rate /
floor rate).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from edge.kpi.component import CHUNK, fold_step
from edge.kpi.config import KpiConfig
from edge.kpi.days import Days
from edge.kpi.engine import Fold, PointPlan
from edge.kpi.figures import day_figures
from edge.store.journal import EVENT_SQL, READING_SQL
from edge.store.reader import JournalReader
from edge.store.schema import migrate

TZ = "Asia/Shanghai"
DAY = dt.date(2026, 3, 10)
POLL = 5
DEVICES = 100


def build_journal(path: Path, points: int, hours: float) -> tuple[int, dict[str, PointPlan]]:
    """A journal of `points` points (10 per device) polled every POLL s from the local midnight of
    DAY; device d0 goes offline for 5 minutes every hour (its readings then stop)."""
    start = Days(TZ).bounds_of(DAY.isoformat())[0]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    migrate(conn, str(path))
    per_device = max(1, points // DEVICES)
    names = [f"d{p // per_device}.p{p % per_device}" for p in range(points)]
    plans = {n: PointPlan(n, n.partition(".")[0], "count", float(POLL)) for n in names}
    seq = 0
    conn.execute("BEGIN")
    conn.execute(EVENT_SQL, (1, start, "bench", "gateway_started", "info", "{}"))
    seq = 1
    for j, k in enumerate(range(0, int(hours * 3600), POLL)):
        ts = start + k
        offline = (k % 3600) >= 3300
        if k % 3600 == 3300:
            seq += 1
            payload = json.dumps({"state": "offline", "previous": "online", "reason": "bench"})
            conn.execute(EVENT_SQL, (seq, ts, "d0", "device_state", "warning", payload))
        if k % 3600 == 0 and k:
            seq += 1
            payload = json.dumps({"state": "online", "previous": "offline", "reason": ""})
            conn.execute(EVENT_SQL, (seq, ts, "d0", "device_state", "info", payload))
        rows = []
        for i, name in enumerate(names):
            if offline and name.startswith("d0."):
                continue
            seq += 1
            rows.append((seq, ts + i / points, name, float((k + i) % 997), 0))
        conn.executemany(READING_SQL, rows)
        if j % 200 == 199:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    conn.execute("COMMIT")
    conn.execute("UPDATE meta SET value=? WHERE key='last_seq'", (seq,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return seq, plans


def fold_day(path: Path, top: int, plans: dict[str, PointPlan]) -> tuple[float, dict[str, Any]]:
    """The KPI fold over the whole journal, then the day's figures; (seconds, figures)."""
    reader = JournalReader(str(path))
    cal = Days(TZ)
    fold = Fold(cal, plans, "bench")
    start = time.perf_counter()
    while fold.state["pos"] < top:
        fold_step(fold, reader, min(top, fold.state["pos"] + CHUNK))
    fold.advance(fold.state["last_ts"])
    day = DAY.isoformat()
    cfg = KpiConfig.model_validate({})
    figures = day_figures(day, fold.days[day], plans, cfg, [], {}, time.time(), False)
    elapsed = time.perf_counter() - start
    reader.close()
    return elapsed, figures


def group_by_floor(path: Path) -> float:
    """One GROUP BY over the same rows in raw sqlite3, fetched into Python; seconds."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    start = time.perf_counter()
    conn.execute(
        "SELECT point, sum((quality & 3) = 0), count(*) FROM journal WHERE kind IS NULL GROUP BY point"
    ).fetchall()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 hours instead of 24 (under a minute)")
    args = ap.parse_args()
    points, hours = 1000, (2.0 if args.quick else 24.0)
    with tempfile.TemporaryDirectory(prefix="bench-kpi-") as tmp:
        path = Path(tmp) / "edge.db"
        built = time.perf_counter()
        rows, plans = build_journal(path, points, hours)
        built = time.perf_counter() - built
        floor_s = min(group_by_floor(path) for _ in range(2))
        fold_s, figures = fold_day(path, rows, plans)
    rate, floor_rate = rows / fold_s, rows / floor_s
    ratio = rate / floor_rate
    d0 = next(d for d in figures["devices"] if d["id"] == "d0")
    print(
        f"journal: {points} points every {POLL} s over {hours:g} h = {rows:,} rows (built in {built:.0f} s)"
    )
    print(f"floor: one GROUP BY point in raw sqlite3     {floor_rate:>12,.0f} rows/s  ({floor_s:.2f} s)")
    print(
        f"KPI fold + the day's figures                 {rate:>12,.0f} rows/s  ({fold_s:.2f} s)   ratio {ratio:.2f}"
    )
    print(
        f"site availability {figures['site']['availability']:.4f}, completeness "
        f"{figures['site']['completeness']:.4f}; d0 (offline 5 min an hour) {d0['availability']:.4f}"
    )
    print(
        json.dumps(
            {
                "bench": "kpi",
                "quick": args.quick,
                "points": points,
                "hours": hours,
                "rows": rows,
                "fold_s": round(fold_s, 3),
                "floor_s": round(floor_s, 3),
                "rows_per_s": round(rate),
                "floor_rows_per_s": round(floor_rate),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
