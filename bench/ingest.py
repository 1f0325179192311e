"""Ingest benchmark: sustained readings/s through hub -> journal (group commit into SQLite), from
many simulated points in driver-sized batches, beside the floor measured in the same run: the same
rows prebuilt and inserted with the journal's own statements (multi-row INSERT ... VALUES, SQLite
WAL, synchronous=NORMAL, 5000 rows per transaction, the same schema). The former floor, raw
`executemany` with 1000 rows per transaction, is printed beside it.

    python -m bench.ingest [--quick] [--rounds N] [--privacy]

Floor and pipeline alternate for N rounds; figures are medians. The last line is one JSON object
with the figures and "ratio" (pipeline / floor, the median of the rounds' own ratios).

`--privacy` measures two more pipelines in each round, with sealing at rest on (a master key,
keys.db, the hub classing every record): the same public readings, and the same stream with 1 %
sensitive events (blood-pressure measurements of 1,000 residents, each sealed under its
resident's key, created before the clock starts: a resident's first measurement also writes
its key, with an fsync, see bench.privacy). Their ratios to the floor and to the plain pipeline
join the JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edge.hub import Hub
from edge.model import Event, PointInfo, Reading, Record
from edge.store.journal import READING_SQL, Journal
from edge.store.rows import insert_readings
from edge.store.schema import migrate

DEVICES = 200
POINTS_PER_DEVICE = 50  # one driver batch = one device poll


FLUSH_ROWS = 5000  # the pipeline's journal commits this many rows per transaction


def floor(path: Path, n: int) -> float:
    """The physical limit here: prebuilt rows inserted with multi-row INSERT ... VALUES statements
    (the journal's own `insert_readings`: the first seq bound, the rest numbered by SQLite),
    FLUSH_ROWS per transaction, WAL, synchronous=NORMAL: the same statements and transactions the
    journal writes, nothing else."""
    conn = _floor_db(path)
    rows = list(_floor_rows(n))
    start = time.perf_counter()
    for i in range(0, n, FLUSH_ROWS):
        conn.execute("BEGIN")
        insert_readings(conn, rows[i : i + FLUSH_ROWS], i + 1)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def executemany_floor(path: Path, n: int) -> float:
    """The former floor: `executemany` of prebuilt (seq, ts, point, value, quality) rows, 1000 per
    transaction. SQLite steps once per row and sqlite3 releases the GIL around each step: 2-2.5x
    slower than `floor`, so no longer a limit (printed for comparison with older figures)."""
    conn = _floor_db(path)
    rows = [(i + 1, *r) for i, r in enumerate(_floor_rows(n))]
    start = time.perf_counter()
    for i in range(0, n, 1000):
        conn.execute("BEGIN")
        conn.executemany(READING_SQL, rows[i : i + 1000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def _floor_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    migrate(conn, str(path))
    return conn


def _floor_rows(n: int) -> Iterator[tuple[float, str, float, int]]:
    t0 = 1.7e9
    return ((t0 + i, f"dev{i % DEVICES}.p{i % POINTS_PER_DEVICE}", float(i), 0) for i in range(n))


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


RESIDENTS = 1000  # subjects of the sensitive events (their data keys stay cached)


def with_sensitive(batches: list[list[Reading]], share: float) -> list[list[Record]]:
    """`batches` with a blood-pressure event added so that `share` of all records are sensitive."""
    every = max(1, round(1 / share) // POINTS_PER_DEVICE) if share else 0
    out: list[list[Record]] = []
    for i, batch in enumerate(batches):
        records: list[Record] = list(batch)
        if every and i % every == 0:
            payload = {
                "resident": f"R-{i % RESIDENTS:04d}",
                "systolic_mmhg": 120 + i % 40,
                "diastolic_mmhg": 80,
            }
            records.append(Event("blood_pressure", f"kiosk-{i % 4}", payload=payload, ts=batch[0].ts))
        out.append(records)
    return out


async def pipeline(path: Path, n: int, privacy: bool = False, sensitive: float = 0.0) -> tuple[float, int]:
    """Readings/s from the first driver batch to the last commit. The producer ingests batch after
    batch and, with more than two steps waiting, awaits `Journal.drained` (until no more than one
    step waits: the writer has taken the rest), not `flush`: drivers never wait for a commit, and
    a producer that waits for every commit takes turns with the writer instead of overlapping it.
    The clock stops at a `flush` after the last batch, so every record is committed."""
    journal = Journal(str(path), flush_interval=0.1, flush_max_items=FLUSH_ROWS).open()
    hub = Hub(journal.append)
    if privacy:
        from edge.privacy.atrest import Sealer
        from edge.privacy.keyfile import create_master_key, load_master_key
        from edge.privacy.keys import SubjectKeys

        create_master_key(path.with_name("master.key"))
        keys = SubjectKeys(path.with_name("keys.db"), load_master_key(path.with_name("master.key")))
        for i in range(RESIDENTS):  # a site's steady state: every resident measured before
            keys.seal(f"R-{i:04d}", b"", b"")
        journal.attach_sealer(Sealer(keys))
        journal.classes = hub  # every record is classed, as in a site
    hub.register_points(
        PointInfo(f"dev{d}.p{p}", f"dev{d}", f"p{p}", deadband=0.001 if p % 10 == 0 else 0.0)
        for d in range(DEVICES)
        for p in range(POINTS_PER_DEVICE)
    )
    hub.subscribe(lambda records: None)  # a live subscriber (rules, UI) on the path, as in a site
    batches = with_sensitive(driver_batches(n), sensitive)
    step = journal.flush_max_items
    start = time.perf_counter()
    for batch in batches:
        hub.ingest(batch)
        if journal.pending > 2 * step:  # never outrun the writer, but keep it fed
            await journal.drained(step)
    committed = await journal.flush()
    elapsed = time.perf_counter() - start
    await journal.close()
    return committed / elapsed, committed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (well under a minute)")
    ap.add_argument("--rounds", type=int, default=3, help="floor/pipeline pairs, alternated (default 3)")
    ap.add_argument("--privacy", action="store_true", help="also with sealing at rest, and 1 %% sensitive")
    args = ap.parse_args()
    n = 600_000 if args.quick else 3_000_000
    floors, old_floors, rates, ratios = [], [], [], []
    sealed: dict[str, list[float]] = {"on": [], "on_1pct": [], "on_ratio": [], "on_1pct_ratio": []}
    sealed_of_plain: dict[str, list[float]] = {"on": [], "on_1pct": []}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        for k in range(args.rounds):  # alternated: a busy neighbour slows both sides of a pair
            d = Path(tmp) / str(k)
            d.mkdir()
            old_floors.append(executemany_floor(d / "executemany.db", n))
            floors.append(floor(d / "floor.db", n))
            rate, committed = asyncio.run(pipeline(d / "edge.db", n))
            rates.append(rate)
            ratios.append(rate / floors[-1])
            db_bytes = os.path.getsize(d / "edge.db")
            if args.privacy:
                for name, share in (("on", 0.0), ("on_1pct", 0.01)):
                    sub = d / name
                    sub.mkdir()
                    r, _ = asyncio.run(pipeline(sub / "edge.db", n, privacy=True, sensitive=share))
                    sealed[name].append(r)
                    sealed[f"{name}_ratio"].append(r / floors[-1])
                    sealed_of_plain[name].append(r / rate)
                    for f in sub.iterdir():
                        f.unlink()
                    sub.rmdir()
            for f in d.iterdir():
                f.unlink()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    floor_rate, old_floor, rate, ratio = (statistics.median(v) for v in (floors, old_floors, rates, ratios))
    print(f"medians of {args.rounds} alternated rounds (ratio: the median of each round's own ratio)")
    print(f"floor: multi-row INSERT, WAL NORMAL, {FLUSH_ROWS} rows/tx     {floor_rate:>12,.0f} rows/s")
    print(f"former floor: executemany, 1000 rows/tx         {old_floor:>12,.0f} rows/s")
    print(
        f"hub -> journal ({DEVICES * POINTS_PER_DEVICE} points, {POINTS_PER_DEVICE}/batch)   {rate:>12,.0f} readings/s"
    )
    print(
        f"ratio {ratio:.2f} (range {min(ratios):.2f}-{max(ratios):.2f}; target >= 0.80); "
        f"to the executemany floor {rate / old_floor:.2f}; committed {committed:,}; db {db_bytes / 2**20:.1f} MiB"
    )
    print(f"peak RSS {rss_mib:.0f} MiB (includes the pre-generated batches)")
    extra: dict[str, float] = {}
    if args.privacy:
        for name, label in (
            ("on", "sealing on, public readings"),
            ("on_1pct", "sealing on, 1 % sensitive events"),
        ):
            med = statistics.median(sealed[name])
            of_floor = statistics.median(sealed[f"{name}_ratio"])
            of_plain = statistics.median(sealed_of_plain[name])
            print(
                f"{label:<40} {med:>12,.0f} records/s; {of_floor:.2f} of the floor, {of_plain:.2f} of the plain pipeline"
            )
            extra[f"privacy_{name}_per_s"] = round(med)
            extra[f"privacy_{name}_ratio"] = round(of_floor, 3)
            extra[f"privacy_{name}_of_plain"] = round(of_plain, 3)
    print(
        json.dumps(
            {
                **extra,
                "readings_per_s": round(rate),
                "floor_rows_per_s": round(floor_rate),
                "ratio": round(ratio, 3),
                "ratio_min": round(min(ratios), 3),
                "ratio_max": round(max(ratios), 3),
                "executemany_floor_rows_per_s": round(old_floor),
                "ratio_to_executemany": round(rate / old_floor, 3),
                "committed": committed,
                "peak_rss_mib": round(rss_mib, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
