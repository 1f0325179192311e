"""Records journaled while the clock is not trusted say so: `"clock_untrusted": true` in the
record shape, through a real HTTP receiver, the pull API, the InfluxDB line protocol and the CLI's
shape; records journaled after the clock synced do not carry the key at all."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.model import Event, Reading
from edge.runtime import Runtime
from edge.store.rows import CLOCK_FLAG
from tests.core.test_clock_runtime import Clocks
from tests.support.site import load
from tests.support.waiting import until
from tests.sync.helpers import Collector, sink
from tests.sync.test_pull_api import call

METER = {"id": "meter", "driver": "sim", "points": [{"name": "v", "signal": "counter", "interval": "20ms"}]}
TOKEN = "clock-consumer-token-0123456789"


def delivered(c: Collector) -> list[dict[str, Any]]:
    """Every record the receiver got, readings and events, by seq (replays de-duplicated)."""
    out: dict[int, dict[str, Any]] = {}
    for body in c.bodies.get("/in", []):
        doc = orjson.loads(body)
        for rec in [*doc["readings"], *doc["events"]]:
            out[rec["seq"]] = rec
    return [out[s] for s in sorted(out)]


async def test_records_are_flagged_while_the_clock_is_untrusted_and_not_after_the_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOCK_TOKEN", TOKEN)
    clocks = Clocks()  # unsynchronised, and the site does not trust such a clock
    collector = Collector()
    async with collector.serving("/in", "/write") as c:
        influx = sink(c.url(""), id="tsdb", type="influxdb", database="edge", precision="ns")
        doc = {
            "devices": [METER],
            "upstream": [sink(c.url("/in")), influx],
            "consumers": [{"id": "city", "token_env": "CLOCK_TOKEN"}],
            "clock": {"trust_unsynced": False},
        }
        rt = Runtime(load(tmp_path, doc), clock_sample=clocks.sample, clock_sync=clocks.sync)
        rt.clock_check_interval = 0.01
        await rt.start()
        try:
            await until(lambda: rt.hub.received >= 5, what="readings while untrusted")
            assert rt.clock_trust.trusted is False
            rt.hub.publish_event(Event("door", "meter", payload={"n": 1}, ts=time.time()))
            flagged_upto = await rt.journal.flush()  # committed while untrusted

            clocks.synced = True
            await until(lambda: rt.clock_trust.trusted, what="the periodic check seeing the sync")
            synced_at = rt.hub.received
            await until(lambda: rt.hub.received >= synced_at + 5, what="readings after the sync")
            rt.hub.publish_event(Event("door", "meter", payload={"n": 2}, ts=time.time()))
            committed = await rt.journal.flush()
            sync: Any = rt.components["sync"]
            sinks = sync.sinks.values()
            await until(lambda: all(s.cursor >= committed for s in sinks), 20, what="the sinks to deliver")

            status, page, _ = await call(
                "GET", f"http://127.0.0.1:{rt.web_port}/api/v1/stream?after=0&limit=10000", TOKEN
            )
            assert status == 200
            tail = rt.journal.read(0, 100_000)  # `edge buffer tail --json`'s shape
        finally:
            await rt.stop()

    kinds = {r.get("kind"): r["seq"] for r in tail if r["type"] == "event"}
    untrusted, synced = kinds["clock_untrusted"], kinds["clock_synced"]
    for name, records in (("receiver", delivered(c)), ("pull API", page["items"]), ("journal", tail)):
        by_seq = {r["seq"]: r for r in records}
        flagged = {s for s, r in by_seq.items() if "clock_untrusted" in r}
        assert all(by_seq[s]["clock_untrusted"] is True for s in flagged), name
        # every record committed between the first check that distrusted the clock and the flush
        # made before the sync is flagged, readings and events alike; nothing after the sync is
        should = {s for s in by_seq if untrusted <= s <= flagged_upto}
        assert should <= flagged, (name, sorted(should - flagged)[:5])
        assert sum("point" in by_seq[s] for s in should) >= 5, name  # readings among them
        after = {s for s in by_seq if s >= synced}
        assert after and not after & flagged, name
    door = [r for r in tail if r.get("kind") == "door"]
    assert [d.get("clock_untrusted") for d in door] == [True, None]
    # the flag is a bit of its own beside the quality: good readings stay good
    assert all(r["quality"] == "good" for r in tail if r["type"] == "reading")

    # InfluxDB line protocol: a tag (in key order, before `device`), only on the flagged records
    lines = b"\n".join(c.bodies["/write"]).decode().splitlines()
    doors = [line for line in lines if line.startswith("events,") and "kind=door," in line]
    assert len(doors) == 2
    assert doors[0].startswith("events,clock_untrusted=true,gateway=") and "clock_untrusted" not in doors[1]
    meter = [line for line in lines if line.startswith("meter,")]
    assert any(line.startswith("meter,clock_untrusted=true,device=meter,") for line in meter)
    assert meter[-1].startswith("meter,device=meter,")


def test_the_flag_is_stored_in_the_quality_column_and_decoded_as_a_key(tmp_path: Path) -> None:
    """Bit 3 of the quality column: it neither collides with the bool flag nor changes the quality."""
    from edge.store.journal import Journal
    from edge.store.rows import connect, insert_records, row_to_record

    path = str(tmp_path / "edge.db")
    Journal(path).open().close_sync()
    w = connect(path)
    t = time.time()
    w.execute("BEGIN")
    insert_records(w, [Reading(t, "d.on", True, 2), Reading(t, "d.x", 1.5)], 1, untrusted=True)
    insert_records(w, [Reading(t, "d.x", 2.5), Event("door", "d", payload={}, ts=t)], 3, untrusted=True)
    insert_records(w, [Reading(t, "d.x", 3.5), Event("door", "d", payload={}, ts=t)], 5)
    w.execute("COMMIT")
    stored = sql_rows(w)
    w.close()
    assert [q for _seq, q in stored] == [2 | 4 | CLOCK_FLAG, CLOCK_FLAG, CLOCK_FLAG, CLOCK_FLAG, 0, None]
    j = Journal.open_readonly(path)
    try:
        recs = j.read(0, 10)
    finally:
        j.close_sync()
    assert recs[0]["value"] is True and recs[0]["quality"] == "stale" and recs[0]["clock_untrusted"] is True
    assert [r.get("clock_untrusted") for r in recs] == [True, True, True, True, None, None]
    assert row_to_record((9, t, "d.x", 1.0, 0, None, None, None)) == {
        "seq": 9,
        "ts": t,
        "type": "reading",
        "point": "d.x",
        "value": 1.0,
        "quality": "good",
    }


def sql_rows(conn: Any) -> list[tuple[int, int | None]]:
    return [tuple(r) for r in conn.execute("SELECT seq, quality FROM journal ORDER BY seq").fetchall()]
