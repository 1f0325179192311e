"""A site whose journal is not `edge.db` had its trend index at `trend.db` before the index was
named from the journal: the first start of this version moves it to `<name>-trend.db`, with what
it holds, instead of rebuilding it from the whole journal and leaving the old file behind with
data no retention reaches. A real runtime."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.site import running_site

SITE = """
devices:
  - id: meter
    driver: sim
    points:
      - {name: kw, type: float, signal: random, min: 0, max: 9, interval: 20ms}
"""


async def test_the_old_trend_db_is_moved_to_the_journals_name(tmp_path: Path) -> None:
    doc = SITE + f"storage: {{path: {tmp_path / 'north.db'}}}\n"
    async with running_site(tmp_path, doc, web=False) as rt:
        trend = rt.components["trend"]
        assert trend.path == str(tmp_path / "north-trend.db")
        await rt.journal.flush()
        await trend.caught_up()
        cursor = trend.cursor
    assert cursor > 0
    # as the previous version named it
    for suffix in ("", "-wal", "-shm"):
        if (tmp_path / f"north-trend.db{suffix}").exists():
            os.rename(tmp_path / f"north-trend.db{suffix}", tmp_path / f"trend.db{suffix}")
    async with running_site(tmp_path, doc, web=False) as rt:
        trend = rt.components["trend"]
        assert trend.cursor >= cursor  # what it held, not rebuilt from seq 0
        assert not (tmp_path / "trend.db").exists() and (tmp_path / "north-trend.db").exists()


async def test_a_trend_db_beside_an_edge_db_stays_that_journals(tmp_path: Path) -> None:
    (tmp_path / "edge.db").write_bytes(b"")  # another site's journal, whose index trend.db is
    (tmp_path / "trend.db").write_bytes(b"x")
    doc = SITE + f"storage: {{path: {tmp_path / 'north.db'}}}\n"
    async with running_site(tmp_path, doc, web=False):
        pass
    assert (tmp_path / "trend.db").read_bytes() == b"x"
