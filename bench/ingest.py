"""Ingest benchmark: sustained readings/s through hub -> journal (group commit into SQLite), from
many simulated points in driver-sized batches, beside the raw `executemany` floor (SQLite WAL,
synchronous=NORMAL, 1000 rows per transaction, the same schema) measured in the same run.

    python -m bench.ingest [--quick]

The last line is one JSON object with the figures and "ratio" (pipeline / floor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

from edge.hub import Hub
from edge.model import PointInfo, Reading
from edge.store.journal import READING_SQL, Journal
from edge.store.schema import migrate

DEVICES = 200
POINTS_PER_DEVICE = 50  # one driver batch = one device poll


def floor(path: Path, n: int) -> float:
    """Raw executemany of prebuilt rows, 1000 per transaction: the physical limit here."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    migrate(conn, str(path))
    t0 = 1.7e9
    rows = [(i + 1, t0 + i, f"dev{i % DEVICES}.p{i % POINTS_PER_DEVICE}", float(i), 0) for i in range(n)]
    start = time.perf_counter()
    for i in range(0, n, 1000):
        conn.execute("BEGIN")
        conn.executemany(READING_SQL, rows[i : i + 1000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def driver_batches(n: int) -> list[list[Reading]]:
    """What the drivers emit: one batch per device poll, values changing every poll."""
    batches = []
    t = time.time()
    polls = n // (DEVICES * POINTS_PER_DEVICE)
    names = [[f"dev{d}.p{p}" for p in range(POINTS_PER_DEVICE)] for d in range(DEVICES)]
    for k in range(polls):
        for d in range(DEVICES):
            batches.append([Reading(t + k, name, float(k + p), 0) for p, name in enumerate(names[d])])
    return batches


async def pipeline(path: Path, n: int) -> tuple[float, int]:
    journal = Journal(str(path), flush_interval=0.1, flush_max_items=5000).open()
    hub = Hub(journal.append)
    hub.register_points(
        PointInfo(f"dev{d}.p{p}", f"dev{d}", f"p{p}", deadband=0.001 if p % 10 == 0 else 0.0)
        for d in range(DEVICES)
        for p in range(POINTS_PER_DEVICE)
    )
    hub.subscribe(lambda records: None)  # a live subscriber (rules, UI) on the path, as in a site
    batches = driver_batches(n)
    high_water = 4 * journal.flush_max_items
    start = time.perf_counter()
    for batch in batches:
        hub.ingest(batch)
        if journal.pending > high_water:  # drivers wait for their next poll; never outrun the writer
            await journal.flush()
    committed = await journal.flush()
    elapsed = time.perf_counter() - start
    await journal.close()
    return committed / elapsed, committed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (well under a minute)")
    args = ap.parse_args()
    n = 600_000 if args.quick else 3_000_000
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as d:
        floor_rate = floor(Path(d) / "floor.db", n)
        rate, committed = asyncio.run(pipeline(Path(d) / "edge.db", n))
        db_bytes = os.path.getsize(Path(d) / "edge.db")
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = rate / floor_rate
    print(f"floor: raw executemany, WAL NORMAL, 1000 rows/tx   {floor_rate:>12,.0f} rows/s")
    print(
        f"hub -> journal ({DEVICES * POINTS_PER_DEVICE} points, {POINTS_PER_DEVICE}/batch)   {rate:>12,.0f} readings/s"
    )
    print(f"ratio {ratio:.2f} (target >= 0.40); committed {committed:,}; db {db_bytes / 2**20:.1f} MiB")
    print(f"peak RSS {rss_mib:.0f} MiB (includes the pre-generated batches)")
    print(
        json.dumps(
            {
                "readings_per_s": round(rate),
                "floor_rows_per_s": round(floor_rate),
                "ratio": round(ratio, 3),
                "committed": committed,
                "peak_rss_mib": round(rss_mib, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
