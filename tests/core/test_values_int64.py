"""An integer beyond the 64 bits the journal holds (a Modbus uint64 of 0xFFFF..., a sim constant
of 1e20, a payload's count) never stops the site's journal: the reading is journaled as the
nearest float, the event keeps its payload with that integer as a float, the rest of the flush is
committed with them, and each such integer is counted in the persisted `ints_as_floats`."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from edge.model import Event, Reading
from edge.store.rows import INTS_AS_FLOATS
from tests.support.site import running_site
from tests.support.waiting import until_async

BIG = 10**20  # beyond SQLite's signed 64 bits and beyond orjson's unsigned 64
UINT64_MAX = (1 << 64) - 1  # 0xFFFFFFFFFFFFFFFF: beyond SQLite's integers, within orjson's
SITE = f"""
devices:
  - id: m
    driver: sim
    points:
      - {{name: big, type: int, signal: constant, value: {BIG}, interval: 1h}}
      - {{name: ok, type: float, signal: constant, value: 1.5, interval: 1h}}
      - {{name: low, type: int, signal: constant, value: {-(1 << 63)}, interval: 1h}}
"""


def rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def test_out_of_range_integers_are_journaled_as_floats_and_counted(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    async with running_site(tmp_path, SITE, web=False) as rt:
        payload = {"n": BIG, "deep": [{"m": -BIG}], "max": UINT64_MAX, "fine": 3}
        rt.hub.ingest([Event("note", "m", payload=payload)])

        async def all_journaled() -> bool:
            await rt.journal.flush()
            kinds = rows(db, "SELECT count(*) FROM journal WHERE kind = 'note'")[0][0]
            points = {p for (p,) in rows(db, "SELECT DISTINCT point FROM journal WHERE kind IS NULL")}
            return kinds == 1 and {"m.big", "m.ok", "m.low"} <= points

        await until_async(all_journaled, timeout=20, what="the readings and the event committed")
        assert rt.journal.write_errors == 0
        assert not rt.journal.failing

        # a uint64 value (a Modbus register of 0xFFFF...) goes the same way as the sim's constant
        before = rt.journal.committed_seq
        rt.hub.ingest([Reading(rt.clock(), "m.big", UINT64_MAX)])

        async def committed() -> bool:
            await rt.journal.flush()
            return bool(rt.journal.committed_seq > before)

        await until_async(committed, what="the uint64 reading committed")
        assert rt.journal.write_errors == 0

    values = rows(
        db, "SELECT point, value, typeof(value), quality FROM journal WHERE kind IS NULL ORDER BY seq"
    )
    big = [(v, t, q) for p, v, t, q in values if p == "m.big"]
    assert big[0] == (float(BIG), "real", 0)
    assert (float(UINT64_MAX), "real", 0) in big
    assert [(v, t) for p, v, t, _ in values if p == "m.low"] == [(-(1 << 63), "integer")]
    assert [v for p, v, _, _ in values if p == "m.ok"] == [1.5]
    (text,) = rows(db, "SELECT payload FROM journal WHERE kind = 'note'")[0]
    assert orjson.loads(text) == {"n": float(BIG), "deep": [{"m": -float(BIG)}], "max": UINT64_MAX, "fine": 3}
    # two values of m.big (the sim's, the uint64), two integers of the payload
    counted = rows(db, "SELECT value FROM counters WHERE name = ?", (INTS_AS_FLOATS,))
    assert counted == [(4,)]


async def test_ints_as_floats_and_unwritable_records_are_shown_at_once(tmp_path: Path) -> None:
    """The journal's counters, buffer health and /metrics show the integers journaled as floats
    and the records refused as unwritable as soon as they are committed, not after a restart."""
    from edge.api.tokens import create_token
    from edge.store.health import buffer_health
    from tests.sync.test_metrics_cli import samples, scrape

    async with running_site(tmp_path, {"devices": []}) as rt:
        j = rt.journal
        before = j.committed_seq
        j.append(
            [
                Reading(rt.clock(), "m.big", BIG),
                Reading(rt.clock(), "m.odd", [1, 2]),  # type: ignore[arg-type]  # no column holds a list
                Reading(rt.clock(), "m.ok", 1.5),
            ]
        )

        async def committed() -> bool:
            await j.flush()
            return j.counters["dropped_unwritable"] == 1 and j.committed_seq >= before + 3

        await until_async(committed, timeout=20, what="the readings and the refusal committed")
        assert j.counters[INTS_AS_FLOATS] == 1
        health = buffer_health(j, rt.site.storage)
        assert health[INTS_AS_FLOATS] == 1
        assert health["dropped_unwritable"] == 1
        got = samples(await scrape(rt.web_port, create_token(rt.state, "prom", ["read"])))
    assert got[("edge_ints_as_floats_total", ())] == 1
    assert got[("edge_dropped_total", (("reason", "dropped_unwritable"), ("where", "buffer")))] == 1
