"""Dead letters of a sink removed or renamed in the site file keep an owner: the status lists
them under `removed_sinks` and /metrics counts them under the id they were stored with, a retry
answers that the sink is gone and how to get rid of them, one can be deleted (audited), and the
public ones expire at the public class's retention (those of a configured sink stay for an
operator). On a real gateway driven by a test clock, with its web server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from edge.api.tokens import create_token
from edge.runtime import Runtime
from edge.sync.component import SyncComponent
from tests.support.site import load
from tests.support.waiting import until
from tests.sync.test_dead_letter_retention import (
    DAY,
    KW,
    PLATE,
    PUBLIC,
    Clocks,
    dead_letter,
    letters,
    passes,
    site,
)


def scrape(comp: SyncComponent) -> str:
    class Sync:
        def collect(self) -> Any:
            return comp.collect_metrics()

    registry = CollectorRegistry()
    registry.register(Sync())
    return generate_latest(registry).decode()


async def test_a_removed_sinks_dead_letters_are_listed_counted_deletable_and_expire(tmp_path: Path) -> None:
    clocks = Clocks()
    doc = site(tmp_path, storage={"keep_history": "30d"})
    rt = Runtime(
        load(tmp_path, doc),
        with_web=True,
        clock=lambda: clocks.wall,
        clock_sample=clocks.sample,
        clock_sync=clocks.sync,
    )
    rt.journal.retention_interval = 0.01
    rt.journal.expirer_interval = 0.0
    rt.clock_check_interval = 0.01
    await rt.start()
    try:
        comp = rt.component(SyncComponent)
        assert comp is not None
        dead_letter(rt, "central", KW, PUBLIC, 400)  # a configured sink's: stays for an operator
        dead_letter(rt, "old-central", {**KW, "seq": 7}, PUBLIC, 10)  # removed: goes at 30 days
        dead_letter(rt, "old-central", {**KW, "seq": 8}, PUBLIC, 1)
        dead_letter(rt, "old-central", {**PLATE, "seq": 9}, 1, 1)
        await passes(rt, clocks)
        assert comp.status()["removed_sinks"] == [{"id": "old-central", "dead_letters": 3}]
        assert 'edge_sink_dead_letters{sink="old-central"} 3.0' in scrape(comp)

        assert rt.state is not None
        token = create_token(rt.state, "ops", ["read", "write"])
        base = f"http://127.0.0.1:{rt.web_port}/api/v1/sync"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async with http.get(base) as r:
                assert (await r.json())["removed_sinks"] == [{"id": "old-central", "dead_letters": 3}]
            async with http.get(f"{base}/dead-letters?sink=old-central") as r:
                listed = {d["seq"]: d["id"] for d in (await r.json())["dead_letters"]}
            async with http.post(f"{base}/dead-letters/{listed[9]}/retry") as r:
                problem = await r.json()
                assert r.status == 409 and problem["title"] == "Sink removed", problem
                assert "no longer in the site file" in problem["detail"] and "DELETE" in problem["detail"]
                assert problem["message_key"] == "msg.sync.sink_removed"
            async with http.delete(f"{base}/dead-letters/{listed[9]}") as r:
                assert r.status == 200 and await r.json() == {
                    "id": listed[9],
                    "sink": "old-central",
                    "deleted": True,
                }
            async with http.delete(f"{base}/dead-letters/{listed[9]}") as r:
                assert r.status == 404
            async with http.delete(f"{base}/dead-letters/x1") as r:
                assert r.status == 400
        assert comp.status()["removed_sinks"] == [{"id": "old-central", "dead_letters": 2}]

        # 21 days later the older of the removed sink's public ones is past 30 days: deleted and
        # reported; the configured sink's public one stays whatever its age
        clocks.wall += 21 * DAY
        clocks.mono += 21 * DAY
        await until(lambda: len(letters(rt)) == 2, what="the removed sink's old public dead letter")
        assert [(s, seq) for s, seq, _p, _age in letters(rt)] == [("central", 2), ("old-central", 8)]
        assert comp.status()["removed_sinks"] == [{"id": "old-central", "dead_letters": 1}]
        await rt.journal.flush()
        expired = [r["payload"] for r in rt.journal.tail(50) if r.get("kind") == "dead_letters_expired"]
        assert expired and expired[-1]["class"] == "public" and expired[-1]["sinks"] == {"old-central": 1}
    finally:
        await rt.stop()
