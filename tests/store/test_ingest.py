"""What the hub journals: change detection (deadband, report_every, quality) decides which readings
reach a real journal, subscribers see exactly those, and the latest value of every point is kept
whether journaled or not."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from edge.hub import Hub
from edge.model import Event, PointInfo, PointType, Reading, Record
from tests.store.helpers import open_journal

POINTS = [
    PointInfo("m.kw", "m", "kw", deadband=0.5),
    PointInfo("m.kwh", "m", "kwh", deadband=0.5, report_every=10.0),
    PointInfo("m.n", "m", "n", type=PointType.INT, deadband=2),
    PointInfo("m.raw", "m", "raw"),  # no filter: every sample is journaled
    PointInfo("m.every", "m", "every", report_every=5.0),  # exact change or every 5 s
    PointInfo("g.open", "g", "open", type=PointType.BOOL, deadband=1.0),  # bools compare exactly
    PointInfo("g.plate", "g", "plate", type=PointType.STR, report_every=3.0),
]


def expected_journaled(stream: list[Record]) -> list[Record]:
    """The rule, written out plainly: a filtered point's reading is journaled when it is the first,
    its quality changed, its value moved beyond the deadband (exact inequality for non-numeric
    points, no deadband or a missing value), or report_every has passed since the last one."""
    info = {p.id: p for p in POINTS}
    last: dict[str, Reading] = {}
    out: list[Record] = []
    for rec in stream:
        if not isinstance(rec, Reading):
            out.append(rec)
            continue
        p = info.get(rec.point)
        if p is None or (p.deadband <= 0 and p.report_every <= 0):
            out.append(rec)
            continue
        prev = last.get(rec.point)
        numeric = p.type in (PointType.FLOAT, PointType.INT)
        if prev is None or prev.quality != rec.quality:
            keep = True
        elif numeric and p.deadband > 0 and rec.value is not None and prev.value is not None:
            keep = abs(rec.value - prev.value) > p.deadband  # type: ignore[operator]
        else:
            keep = rec.value != prev.value
        if not keep and prev is not None and p.report_every > 0 and rec.ts - prev.ts >= p.report_every:
            keep = True
        if keep:
            last[rec.point] = rec
            out.append(rec)
    return out


def stream(n: int, seed: int) -> list[list[Record]]:
    rnd = random.Random(seed)
    batches: list[list[Record]] = []
    t = 1_700_000_000.0
    for _ in range(n):
        batch: list[Record] = []
        for _ in range(rnd.randint(1, 12)):
            t += rnd.choice((0.0, 0.5, 1.0, 4.0))
            q = rnd.choice((0, 0, 0, 0, 1, 2))
            kind = rnd.randrange(9)
            rec: Record
            if kind == 0:
                rec = Reading(t, "m.kw", rnd.choice((None, 10.0, 10.2, 10.6, 11.5, 9.0)), q)
            elif kind == 1:
                rec = Reading(t, "m.kwh", round(rnd.uniform(100, 102), 1), q)
            elif kind == 2:
                rec = Reading(t, "m.n", rnd.randint(0, 6), q)
            elif kind == 3:
                rec = Reading(t, "m.raw", rnd.choice((1.0, 1.0, 2.0)), q)
            elif kind == 4:
                rec = Reading(t, "m.every", rnd.choice((5.0, 5.0, 5.0, 6.0)), q)
            elif kind == 5:
                rec = Reading(t, "g.open", rnd.choice((True, False, True)), q)
            elif kind == 6:
                rec = Reading(t, "g.plate", rnd.choice(("沪A12345", "沪A12345", "京B0")), q)
            elif kind == 7:
                rec = Reading(t, "x.unregistered", rnd.random(), q)
            else:
                rec = Event("gate_pass", "g", "info", {"n": rnd.randint(0, 9)}, t)
            batch.append(rec)
        batches.append(batch)
    return batches


def as_rows(records: list[Any]) -> list[tuple[Any, ...]]:
    return [
        ("r", r.point, r.value, type(r.value).__name__, r.quality)
        if isinstance(r, Reading)
        else ("e", r.kind, r.source, r.payload)
        for r in records
    ]


async def test_the_journal_holds_exactly_the_readings_change_detection_lets_through(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, keep_history=None)
    hub = Hub(journal.append)
    hub.register_points(POINTS)
    seen: list[Record] = []
    hub.subscribe(seen.extend)
    batches = stream(3000, seed=7)
    flat = [r for b in batches for r in b]
    try:
        returned: list[Record] = []
        for b in batches:
            returned += hub.ingest(b)
        committed = await journal.flush()
        rows = journal.read(0, len(flat) + 1)
    finally:
        await journal.close()
    want = expected_journaled(flat)
    assert 0 < len(want) < len(flat)  # the stream exercises both outcomes
    assert as_rows(returned) == as_rows(want)
    assert as_rows(seen) == as_rows(want)  # subscribers get exactly what was journaled
    assert committed == len(want)
    stored = [
        ("r", r["point"], r["value"], type(r["value"]).__name__, ["good", "bad", "stale"].index(r["quality"]))
        if r["type"] == "reading"
        else ("e", r["kind"], r["source"], r["payload"])
        for r in rows
    ]
    assert stored == as_rows(want)
    events = sum(isinstance(r, Event) for r in flat)
    assert (hub.received, hub.events) == (len(flat) - events, events)
    assert hub.journaled == len(want) - events
    newest = {r.point: r for r in flat if isinstance(r, Reading)}
    assert hub.latest == newest  # every sample updates the latest value, journaled or not
