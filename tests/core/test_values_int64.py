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
