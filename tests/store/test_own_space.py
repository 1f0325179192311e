"""The stores beside the journal count as the gateway's own space on its disk: the state database
and the trend index, with their WALs (and keys.db, see test_keys_space), so their growth toward the
reserve is never taken for another program's. A real runtime."""

from __future__ import annotations

from pathlib import Path

from edge.store import space
from tests.support.site import running_site

SITE = """
site: {id: own-space}
devices:
  - id: meter-1
    driver: sim
    points:
      - {name: kw, type: float, signal: constant, value: 1.5, interval: 1h}
"""


async def test_the_state_db_and_the_trend_index_are_the_gateways_own_space(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        state = rt.state.path
        trend = rt.components["trend"].path
        # grow the state DB by a lot: its bytes are counted the moment they are on disk
        with rt.state.lock:
            rt.state.conn.execute("CREATE TABLE IF NOT EXISTS ballast(b BLOB)")
            rt.state.conn.execute("INSERT INTO ballast VALUES (zeroblob(2000000))")
        held = space.db_bytes(state) + space.db_bytes(trend)
        assert held > 2_000_000
        assert rt.journal._own_bytes() >= held
