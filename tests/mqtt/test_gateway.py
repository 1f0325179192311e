"""The gateway as a process (`edge run`) with an mqtt sink under sustained load: killed with
SIGKILL three times while the broker restarts twice. The broker publishes the will `offline` at
each kill and the retained `online` at each start; afterwards the subscriber holds every committed
record at least once, first seen in seq order, duplicates only from what was in flight."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.mqtt.broker import Subscriber, mqtt_sink
from tests.support.cli import start_edge_run
from tests.support.procs import stop_process, terminate
from tests.support.site import busy_meter, site_file
from tests.support.waiting import until

KILLS = 3
BATCH = 100
STATUS = "edge/chaos-site/status"
TOPIC = "edge/chaos-site/records"

pytestmark = pytest.mark.skipif(
    "mqtt" not in {e.name for e in entry_points(group="community_edge.plugins")},
    reason="the mqtt plugin's entry point is not installed (pyproject.toml: "
    'mqtt = "edge.mqtt.plugin:PLUGIN"; then pip install -e .)',
)


def site(tmp_path: Path, port: int, *, busy: bool, name: str) -> Path:
    doc = {
        "site": {"id": "chaos-site"},
        "devices": [busy_meter()] if busy else [],
        "upstream": [mqtt_sink(port, batch={"max_items": BATCH, "max_age": "100ms"}, keepalive="5s")],
    }
    return site_file(tmp_path, doc, name=name)


def committed_seq(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0])
    finally:
        conn.close()


async def test_kill9_and_broker_restarts_lose_nothing_and_will_says_offline(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    busy = site(tmp_path, b.port, busy=True, name="busy.yaml")
    drain = site(tmp_path, b.port, busy=False, name="drain.yaml")
    procs: list[subprocess.Popen[bytes]] = []
    restarts = 0
    async with Subscriber(b.port) as sub:
        try:
            for k in range(KILLS):
                statuses = len(sub.on(STATUS))
                gw = start_edge_run(busy, tmp_path / f"run{k}.log")
                procs.append(gw)
                await until(sub.says(STATUS, b"online", statuses), 60, what="the birth message `online`")
                await until(sub.grown(TOPIC, 3 * BATCH), 60, what="records flowing")
                if restarts < 2:
                    b.restart()
                    restarts += 1
                    await until(sub.grown(TOPIC, BATCH), 60, what="records after the restart")
                statuses = len(sub.on(STATUS))
                os.kill(gw.pid, signal.SIGKILL)
                gw.wait(10)
                await until(sub.says(STATUS, b"offline", statuses), 30, what="the will `offline`")
            statuses = len(sub.on(STATUS))
            gw = start_edge_run(drain, tmp_path / "drain.log")
            procs.append(gw)
            # up first: with every record already delivered before the last kill, a SIGTERM sent
            # while it still imports would find no handler and end it with -15, not a clean stop
            await until(sub.says(STATUS, b"online", statuses), 60, what="the drain's birth message `online`")
            committed = committed_seq(tmp_path / "edge.db")
            await until(
                lambda: set(range(1, committed + 1)) <= set(sub.seqs(TOPIC)),
                90,
                what="every committed record",
            )
            terminate(gw, timeout=15)
            assert gw.returncode == 0, (tmp_path / "drain.log").read_text()[-3000:]
            # a clean stop says `offline` itself (a clean DISCONNECT sends no will)
            await until(lambda: sub.on(STATUS)[-1:] == [b"offline"], 15, what="offline on a clean stop")
        finally:
            for p in procs:
                stop_process(p)
    seqs = sub.seqs(TOPIC)
    counts: dict[int, int] = {}
    for q in seqs:
        counts[q] = counts.get(q, 0) + 1
    duplicated = [q for q, n in counts.items() if n > 1]
    # a replay is at most the batch in flight plus what followed the last durable cursor, per crash
    assert len(duplicated) <= (KILLS + restarts) * 2 * BATCH, len(duplicated)
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen)
