"""A damaged page among the journal's newest records (those a start reads the latest values from)
stops `edge run` with one line that names the journal and says what to do (`edge doctor` runs
SQLite's quick_check; restore from a backup; docs/storage.md), not a traceback that names neither
the file nor a way out."""

from __future__ import annotations

import time
from pathlib import Path

from tests.store.helpers import damage_journal_leaf, open_journal, readings
from tests.support.cli import edge_cli
from tests.support.site import site_file


async def test_a_damaged_page_among_the_newest_records_stops_the_start_in_one_line(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    try:
        journal.append(readings(20_000, start_ts=time.time(), step=1e-3))
        await journal.flush()
    finally:
        await journal.close()
    path = tmp_path / "edge.db"
    damage_journal_leaf(path, newest=True, offset=5)
    config = site_file(tmp_path, {"site": {"id": "damaged", "name": "d"}})

    done = edge_cli("run", "-c", str(config), timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out, out
    failed = [line for line in out.splitlines() if "start failed" in line]
    assert len(failed) == 1, out
    assert f"journal {path} is damaged" in failed[0], failed[0]
    assert "malformed" in failed[0]
    assert "`edge doctor -c SITE.yaml` runs SQLite's quick_check" in failed[0]
    assert "restore it from a backup" in failed[0] and "docs/storage.md" in failed[0]
