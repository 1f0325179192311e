"""A KPI day is closed, and its `kpi_daily` journaled, at most once per site as far as the box can
know, across a restore: a backup taken before the day closed, restored on the box that closed it
since, keeps that day closed; a replacement box restored with `--continue-after`, which cannot
know, closes the day with its figures marked as missing the records of the restore's gap.

Real `edge run`, `edge backup` and `edge restore` processes; the day's end is made with
libfaketime (the runs after the backup have their wall clock two days ahead).
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

from edge.kpi.days import Days
from tests.rules.test_restart import _query, _stop
from tests.rules.test_timers_restart import _start, needs_faketime
from tests.support.cli import edge_cli
from tests.support.site import site_file
from tests.support.waiting import until_sync

TZ = "Asia/Shanghai"
SITE: dict[str, Any] = {
    "site": {"id": "kpi-restore", "name": "KPI restore", "timezone": TZ},
    "kpi": {"interval": "100ms"},
    "devices": [
        {"id": "meter", "driver": "sim", "points": [{"name": "p", "signal": "random", "interval": "200ms"}]}
    ],
}


def _top(journal: Path) -> int:
    return int(_query(journal, "SELECT coalesce(max(seq), 0) FROM journal")[0][0])


def _dailies(journal: Path, day: str) -> list[tuple[int, dict[str, Any]]]:
    rows = _query(journal, "SELECT seq, payload FROM journal WHERE kind='kpi_daily' ORDER BY seq")
    return [(int(seq), p) for seq, text in rows if (p := json.loads(text))["day"] == day]


def _kpi_meta(state: Path, key: str) -> Any:
    rows = _query(state, f"SELECT value FROM kpi_meta WHERE key='{key}'")
    return json.loads(rows[0][0]) if rows else None


def _settled(journal: Path, state: Path, after: int) -> bool:
    """The fold of the run started above seq `after` has passed its start, and every day it closed
    is journaled (nothing left to announce)."""
    started = _query(journal, f"SELECT min(seq) FROM journal WHERE kind='gateway_started' AND seq > {after}")
    if not started or started[0][0] is None:
        return False
    fold = _kpi_meta(state, "state")
    return fold is not None and int(fold["pos"]) >= int(started[0][0]) and _kpi_meta(state, "announce") == []


def _backed_up_on_day(config: Path, journal: Path, state: Path, archive: Path) -> tuple[str, int]:
    """Run the site today, back it up mid-run and let it go on; returns (today, backup's last seq)."""
    proc = _start(config)
    try:
        until_sync(lambda: _settled(journal, state, 0), timeout=30, what="the first run folded")
        done = edge_cli("backup", "-c", str(config), "--out", str(archive))
        assert done.returncode == 0, done.stderr
        backed_up = int(re.search(r"journal up to seq (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
        until_sync(lambda: _top(journal) > backed_up + 20, timeout=30, what="records after the backup")
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)
    return Days(TZ).day_of(time.time()), backed_up


@needs_faketime
def test_a_day_closed_after_the_backup_stays_closed_after_a_restore_on_the_same_box(tmp_path: Path) -> None:
    config = site_file(tmp_path, SITE)
    journal, state, archive = tmp_path / "edge.db", tmp_path / "state.db", tmp_path / "nightly.tar.gz"
    day, _ = _backed_up_on_day(config, journal, state, archive)
    assert _dailies(journal, day) == []

    proc = _start(config, ahead="+2d")  # the day ends, and closes
    try:
        until_sync(lambda: _dailies(journal, day), timeout=30, what=f"kpi_daily of {day}")
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)
    ((closed_at, sent),) = _dailies(journal, day)

    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert f"KPI day {day} was closed after this backup (kpi_daily at seq {closed_at})" in done.stdout, (
        done.stdout
    )
    restored = _top(journal)

    proc = _start(config, ahead="+2d")
    try:
        until_sync(lambda: _settled(journal, state, restored), timeout=30, what="the fold past the restart")
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)
    # upstream holds the full one: no second kpi_daily, from the backup's records alone
    assert _query(journal, f"SELECT payload FROM journal WHERE kind='kpi_daily' AND seq > {restored}") == []
    (event,) = _query(
        journal, f"SELECT payload FROM journal WHERE kind='journal_restored' AND seq > {restored}"
    )
    assert day in json.loads(event[0])["kpi_days_kept_closed"]  # with the days the stop went over
    row = _query(state, f"SELECT closed, figures FROM kpi_days WHERE day='{day}'")
    assert row and row[0][0] == 1 and json.loads(row[0][1])["site"] == sent["site"]


@needs_faketime
def test_a_replacement_box_marks_a_day_missing_the_restore_gaps_records(tmp_path: Path) -> None:
    lost = tmp_path / "lost"
    lost.mkdir()
    archive = tmp_path / "nightly.tar.gz"
    day, backed_up = _backed_up_on_day(site_file(lost, SITE), lost / "edge.db", lost / "state.db", archive)
    lost_top = _top(lost / "edge.db")

    new = tmp_path / "new"
    new.mkdir()
    config = site_file(new, SITE)
    journal, state = new / "edge.db", new / "state.db"
    done = edge_cli("restore", "-c", str(config), str(archive), "--continue-after", str(lost_top))
    assert done.returncode == 0, done.stderr

    proc = _start(config, ahead="+2d")
    try:
        until_sync(lambda: _dailies(journal, day), timeout=30, what=f"kpi_daily of {day}")
        until_sync(lambda: _settled(journal, state, backed_up), timeout=30, what="the fold past the start")
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)
    ((_, sent),) = _dailies(journal, day)
    gap = sent["restore_gap"]
    assert gap is not None, sent
    assert gap["first_seq"] == backed_up + 1 and gap["last_seq"] == lost_top
    assert gap["archive"] == archive.name
    start, end = Days(TZ).bounds_of(day)
    assert start <= gap["from"] < end and gap["from"] < gap["until"]
