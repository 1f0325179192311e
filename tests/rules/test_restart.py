"""Rule state survives `kill -9`: a pending `for:` keeps its start, an active alert does not re-fire.

A real `edge run -c site.yaml` process is killed with SIGKILL while rule `stuck` is pending
(`for: 8s`) and rule `full` has an active alert; after a restart `stuck` fires once, at its
original deadline (not 8 s after the restart), and `full` never fires again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.support.site import site_file
from tests.support.waiting import until_sync

ROOT = Path(__file__).resolve().parents[2]
PACK = """
rules:
  - id: stuck
    when: gate.barrier_open
    if: value == True
    for: 8s
    then: [{alert: "barrier open for 8 s"}]
  - id: full
    when: bin-1.fill_pct
    if: value > 90
    then: [{alert: "bin full {value}"}]
"""
SITE = {
    "devices": [
        {
            "id": "gate",
            "driver": "sim",
            "points": [
                {
                    "name": "barrier_open",
                    "type": "bool",
                    "signal": "constant",
                    "value": True,
                    "interval": "200ms",
                }
            ],
        },
        {
            "id": "bin-1",
            "driver": "sim",
            "points": [{"name": "fill_pct", "signal": "constant", "value": 95, "interval": "200ms"}],
        },
    ],
}


def _query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        conn.close()


def _alerts(db: Path) -> list[tuple[str, float]]:
    return [(r[0], r[1]) for r in _query(db, "SELECT point, ts FROM journal WHERE kind='alert' ORDER BY seq")]


def _start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        proc.wait(timeout=20)


def test_pending_for_and_active_alert_survive_kill_9(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK)
    config = site_file(tmp_path, {**SITE, "rules": {"packs": [str(pack)]}})
    journal, state = tmp_path / "edge.db", tmp_path / "state.db"

    proc = _start(config)
    try:
        rows = until_sync(
            lambda: (
                {
                    r[0]: r
                    for r in _query(state, "SELECT rule_id, key, phase, since, last_fired FROM rule_state")
                    if r[2] in ("pending", "active")
                }
                if len(_query(state, "SELECT 1 FROM rule_state")) == 2
                else None
            ),
            timeout=30,
            what="pending and active rule state persisted",
        )
        assert rows is not None
        assert rows["stuck"][2] == "pending" and rows["full"][2] == "active"
        pending_since = rows["stuck"][3]
        until_sync(lambda: _alerts(journal), timeout=10, what="the first alert committed")
        _stop(proc, signal.SIGKILL)
    finally:
        _stop(proc, signal.SIGKILL)
    assert [a[0] for a in _alerts(journal)] == ["full"]
    killed_at = time.time()
    assert killed_at < pending_since + 8, "the test machine was too slow to kill before the deadline"

    proc = _start(config)
    restarted = time.time()
    try:
        until_sync(lambda: len(_alerts(journal)) >= 2, timeout=30, what="stuck fires after restart")
        # the pack is imported on the first start only: versions stay 1
        assert _query(state, "SELECT id, version FROM rules ORDER BY id") == [("full", 1), ("stuck", 1)]
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)

    alerts = _alerts(journal)
    assert [a[0] for a in alerts] == ["full", "stuck"], alerts  # full did not fire again; stuck once
    stuck_ts = alerts[1][1]
    # it fired on its original schedule, not 8 s after the restart
    assert pending_since + 8 <= stuck_ts < restarted + 8, (pending_since, restarted, stuck_ts)
    state_rows = _query(state, "SELECT rule_id, phase FROM rule_state ORDER BY rule_id")
    assert state_rows == [("full", "active"), ("stuck", "active")]
    payload = json.loads(
        _query(journal, "SELECT payload FROM journal WHERE kind='alert' ORDER BY seq DESC LIMIT 1")[0][0]
    )
    assert payload["rule"] == "stuck" and payload["state"] == "fired"
