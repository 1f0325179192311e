"""One gateway per site: a second `edge run` on a site that runs refuses before it opens or writes
anything, and a lock left by a killed gateway blocks nobody (real `edge run` processes)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.config import load_site
from edge.runtime import Runtime, SiteBusy, SiteLock
from tests.support.cli import ROOT
from tests.support.ports import free_port
from tests.support.procs import stop_process, terminate
from tests.support.site import site_file
from tests.support.waiting import until_sync

SITE: dict[str, Any] = {
    "devices": [
        {
            "id": "meter",
            "driver": "sim",
            "points": [
                {"name": "power", "signal": "sine", "min": 1, "max": 5, "period": "1m", "interval": "20ms"}
            ],
        }
    ]
}


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _journal(db: Path) -> tuple[int, int]:
    """(max(seq), row count), read as any outside reader would."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        top, count = conn.execute("SELECT coalesce(max(seq), 0), count(*) FROM journal").fetchone()
        return int(top), int(count)
    finally:
        conn.close()


def _committed(db: Path) -> int:
    """Rows committed so far; 0 while the first gateway is still creating the file."""
    try:
        return _journal(db)[1] if db.exists() else 0
    except sqlite3.OperationalError:  # no journal table yet
        return 0


def _kinds(db: Path) -> list[tuple[int, str | None]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, kind FROM journal ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_a_second_edge_run_refuses_writes_nothing_and_the_first_keeps_committing(tmp_path: Path) -> None:
    # a fixed port, as on a gateway: the web server is not what stops the second
    config = site_file(tmp_path, {**SITE, "web": {"listen": f"127.0.0.1:{free_port()}"}})
    db = tmp_path / "edge.db"
    first = _start(config)
    second: subprocess.Popen[str] | None = None
    try:
        until_sync(lambda: _committed(db) > 20, timeout=30, what="the first's readings")
        # the first holds still (its lock too) while the second tries: any row now is the second's
        first.send_signal(signal.SIGSTOP)
        try:
            before = _journal(db)
            files_before = sorted(p.name for p in tmp_path.iterdir())
            second = _start(config)
            out, _ = second.communicate(timeout=60)
            after = _journal(db)
            files_after = sorted(p.name for p in tmp_path.iterdir())
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 1, out
        lock = tmp_path / "edge.db-lock"
        refusal = f"another gateway (pid {first.pid}) is running this site: {lock} is locked"
        assert refusal in out, out
        assert [line for line in out.splitlines() if "level=error" in line] == [
            line for line in out.splitlines() if refusal in line
        ], out
        assert after == before  # not a row: no gateway_started, no gateway_stopped
        assert files_after == files_before  # no state DB, trend index or key of its own either
        until_sync(lambda: _journal(db)[0] > before[0] + 20, timeout=30, what="the first committing on")
        out = terminate(first)
    finally:
        stop_process(second)
        stop_process(first)
    assert first.returncode == 0, out
    assert "IntegrityError" not in out and "could not commit" not in out, out
    rows = _kinds(db)
    assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
    assert [kind for _, kind in rows if kind and kind.startswith("gateway_")] == [
        "gateway_started",
        "gateway_stopped",
    ]


def test_the_lock_file_of_a_killed_gateway_does_not_block_the_next(tmp_path: Path) -> None:
    config = site_file(tmp_path, SITE)
    db = tmp_path / "edge.db"
    lock = tmp_path / "edge.db-lock"
    killed = _start(config)
    try:
        until_sync(lambda: _committed(db) > 5, timeout=30, what="the first's readings")
        assert lock.read_text().strip() == str(killed.pid)
    finally:
        stop_process(killed)  # SIGKILL: no stop, the lock file stays
    assert lock.exists()
    left = _journal(db)[0]
    nxt = _start(config)
    try:
        until_sync(lambda: _journal(db)[0] > left + 5, timeout=30, what="the next gateway's readings")
        assert lock.read_text().strip() == str(nxt.pid)
        out = terminate(nxt)
    finally:
        stop_process(nxt)
    assert nxt.returncode == 0, out
    assert "start failed" not in out, out
    assert not lock.exists()  # a gateway that stops removes its own


async def test_a_lock_taken_before_the_runtime_is_the_one_it_holds_and_releases(tmp_path: Path) -> None:
    """A command that writes files of the site before it starts the runtime takes the lock first
    and hands it over; the runtime does not refuse its own caller, and releases it at stop."""
    site = load_site(site_file(tmp_path, SITE))
    lock = SiteLock(site.storage.path)
    lock.acquire()
    rt = Runtime(site, with_web=False, lock=lock)
    try:
        await rt.start()
        with pytest.raises(SiteBusy, match=rf"another gateway \(pid {os.getpid()}\) is running this site"):
            SiteLock(site.storage.path).acquire()
    finally:
        await rt.stop()
    assert not lock.held
    after = SiteLock(site.storage.path)
    after.acquire()  # free again
    after.release()
