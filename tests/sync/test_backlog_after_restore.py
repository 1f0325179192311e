"""After a restore with `--continue-after`, the seqs it skipped are no backlog: a sink's and a
consumer's backlog (status, /metrics, buffer health) count the records the journal holds after
their cursor, not the whole seq range across the gap."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric

from edge.model import Reading
from edge.store.health import buffer_health
from edge.sync import metrics
from tests.store.helpers import open_journal, readings
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.sync.helpers import sink

SKIP_TO = 222_000


def gauge(fams: list[Metric], name: str, label: str) -> float:
    for fam in fams:
        for sample in fam.samples:
            if sample.name == name and label in sample.labels.values():
                return float(sample.value)
    raise AssertionError(f"no {name} for {label}")


async def fill(folder: Path, n: int) -> None:
    journal = open_journal(folder)
    try:
        journal.append(readings(n, start_ts=1_000.0, step=1e-3))
        await journal.flush()
    finally:
        await journal.close()


async def test_the_skipped_seqs_are_no_backlog(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CITY_TOKEN", "city-token-0123456789")
    doc = {
        "site": {"id": "gap", "name": "g"},
        # port 9: nothing answers, so the sink delivers nothing and its backlog stays
        "upstream": [sink("http://127.0.0.1:9/ingest", retry={"initial": "1s", "max": "5s"})],
        "consumers": [{"id": "city", "token_env": "CITY_TOKEN"}],
    }
    lost = tmp_path / "lost"
    lost.mkdir()
    await fill(lost, 300)
    archive = tmp_path / "b.tar.gz"
    done = await asyncio.to_thread(edge_cli, "backup", "-c", str(site_file(lost, doc)), "--out", str(archive))
    assert done.returncode == 0, done.stderr
    new = tmp_path / "new"
    new.mkdir()
    config = site_file(new, doc)
    done = await asyncio.to_thread(
        edge_cli, "restore", "-c", str(config), str(archive), "--continue-after", str(SKIP_TO)
    )
    assert done.returncode == 0, done.stderr

    async with running_site(new, doc, web=False) as rt:
        t = time.time()
        rt.hub.ingest([Reading(t + n * 1e-3, "after.kw", float(n)) for n in range(500)])
        committed = await rt.journal.flush()
        assert committed > SKIP_TO
        comp = rt.components["sync"]
        s = comp.sinks["central"]
        held = rt.journal.count_range(s.cursor, committed)
        assert held < 1_000  # 300 restored and 500 new records, a few events
        status = comp.status()
        assert status["sinks"][0]["backlog_rows"] == held, (status["sinks"][0]["backlog_rows"], held)
        fams = list(metrics.families(status))
        assert gauge(fams, "edge_sink_backlog_rows", "central") == held
        city = rt.journal.get_cursor("city") or 0
        assert gauge(fams, "edge_consumer_backlog_rows", "city") == rt.journal.count_range(city, committed)
        health = buffer_health(rt.journal, rt.site.storage)
        assert health["cursors"]["central"]["backlog"] == rt.journal.count_range(
            health["cursors"]["central"]["seq"], committed
        )
        # a cursor past the gap counts from there, and one inside it from the gap's end
        assert rt.journal.unsent(SKIP_TO, committed)[0] == rt.journal.count_range(SKIP_TO, committed)
        assert rt.journal.unsent(1_000, committed)[0] == rt.journal.count_range(1_000, committed)
        assert rt.journal.unsent(0, 300) == (300, 1_000.0)  # before the gap, as ever
