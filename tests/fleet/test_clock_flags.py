"""Which records an untrusted clock stamped is told by the journal's own order: the runtime
journals `clock_untrusted` before any device's first reading, and `clock_synced` when trust comes
back, so every record between the two (by seq) was stamped while the clock was untrusted and
every record after the sync was not (docs/operations.md, "Clock trust")."""

from __future__ import annotations

from pathlib import Path

from edge.runtime import Runtime
from tests.core.test_clock_runtime import Clocks
from tests.store.helpers import sql
from tests.support.site import load
from tests.support.waiting import until

METER = {"id": "meter", "driver": "sim", "points": [{"name": "v", "signal": "counter", "interval": "20ms"}]}


async def test_records_between_untrusted_and_synced_are_the_ones_an_untrusted_clock_stamped(
    tmp_path: Path,
) -> None:
    clocks = Clocks()  # unsynchronised; the site does not trust such a clock
    rt = Runtime(
        load(tmp_path, {"devices": [METER], "clock": {"trust_unsynced": False}}),
        clock_sample=clocks.sample,
        clock_sync=clocks.sync,
    )
    rt.clock_check_interval = 0.01
    await rt.start()
    try:
        await until(lambda: rt.hub.received >= 5, what="readings while untrusted")
        assert rt.status()["clock"]["trusted"] is False
        clocks.synced = True
        await until(lambda: rt.clock_trust.trusted, what="the periodic check seeing the sync")
        synced_at = rt.hub.received
        await until(lambda: rt.hub.received >= synced_at + 5, what="readings after the sync")
        await rt.journal.flush()
        rows = sql(rt.journal, "SELECT seq, kind FROM journal ORDER BY seq")
    finally:
        await rt.stop()
    untrusted = [seq for seq, kind in rows if kind == "clock_untrusted"]
    synced = [seq for seq, kind in rows if kind == "clock_synced"]
    readings = [seq for seq, kind in rows if kind is None]
    assert len(untrusted) == 1 and len(synced) == 1, rows
    assert readings and min(readings) > untrusted[0]  # no reading before the trust was checked
    stamped_untrusted = [s for s in readings if s < synced[0]]
    assert len(stamped_untrusted) >= 5 and len([s for s in readings if s > synced[0]]) >= 5
