"""Crash test: a subprocess ingests at full speed, is kill -9'd at random points, and every record
at or below the highest seq seen committed before the kill is still there; integrity_check is ok."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.store.helpers import integrity

WRITER = Path(__file__).with_name("crash_writer.py")
ROOT = Path(__file__).resolve().parents[2]


def committed_max(db: Path) -> int:
    """Highest committed seq, read like any outside reader would: a read-only connection."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0])
    except sqlite3.OperationalError:  # the writer is still creating the schema
        return 0
    finally:
        conn.close()


def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


@pytest.mark.parametrize("durability", ["normal", "strict"])
def test_kill_9_loses_nothing_committed(tmp_path: Path, durability: str) -> None:
    db = tmp_path / "edge.db"
    rng = random.Random()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    previous = 0
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, str(WRITER), str(db), durability], env=env, cwd=ROOT)
        try:
            # a random kill point: somewhere after another 2k..60k committed records
            target = previous + rng.randint(2_000, 60_000)
            wait_for(
                lambda t=target, p=proc: committed_max(db) >= t or p.poll() is not None, 60, f"seq {target}"
            )
            assert proc.poll() is None, f"writer exited early with {proc.returncode}"
            seen = committed_max(db)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        assert integrity(str(db)) == "ok", f"round {round_}"
        conn = sqlite3.connect(db)
        try:
            lo, n = conn.execute("SELECT min(seq), count(*) FROM journal WHERE seq <= ?", (seen,)).fetchone()
            high = conn.execute("SELECT max(seq) FROM journal").fetchone()[0]
        finally:
            conn.close()
        assert lo == 1 and n == seen, f"round {round_}: {seen - n} committed records missing after kill -9"
        assert high >= seen
        previous = high
