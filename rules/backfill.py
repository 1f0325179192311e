"""Window contents rebuilt from the journal: at start-up, and for rules changed at run time.

The hub hands the engine exactly the journaled readings, so what a window `avg(P, 10m)` holds is a
function of the journal: the good numeric readings of P in the last 10 minutes. After a restart
(or when a rule brings a new window at run time) `read_history` reads those readings back, in
journal order, into fresh `Window`s, and `Engine.fill_windows` puts them in place. Nothing is
evaluated on the way: no rule state, timer, latest value or action is touched.

The read is bounded twice, so a large journal cannot stall start-up: by reading time (the longest
window wanted plus `MARGIN_S` for readings journaled slightly out of timestamp order) and by a row
budget (`max_rows` journal rows, newest kept). It runs in a thread, paged on the journal's read
connection, so the event loop and the journal writer keep going.

A sealed reading (a sensitive point's number) comes opened from the gateway's own connection. A
dry run's process reads the journal as stored and has no keys: it passes an `Opener`, which opens
the envelopes of the page's readings that fill a window (and no other) where the keys are.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rules.state import RuleRuntime
from rules.windows import Window

if TYPE_CHECKING:
    from edge.store.reader import JournalQueries

MARGIN_S = 60.0  # readings journaled up to this much out of timestamp order are still found
PAGE = 5000
DEFAULT_MAX_ROWS = 500_000
WindowKey = tuple[str, float]
#: Opens sealed journal cells: each (column, ts, point or source, envelope) -> the cell as a reader
#: holding the site's keys fetches it (a reading's value; an event's payload as JSON text), or as
#: one without them (null; `{"sealed": true}`) when it does not open.
Opener = Callable[[Sequence[tuple[str, float, str, bytes]]], list[Any]]


@dataclass
class WindowWants:
    """The windows to refill: (point, seconds) pairs, and per-point windows of pattern rules
    (`avg(point, W)` with `when: bin-*.fill_pct`), each created for every matching point found."""

    points: set[WindowKey] = field(default_factory=set)
    patterns: list[tuple[re.Pattern[str], float]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.points or self.patterns)

    @property
    def longest(self) -> float:
        return max([s for _, s in self.points] + [s for _, s in self.patterns], default=0.0)

    def add_rule(self, rr: RuleRuntime) -> None:
        exprs = (rr.compiled.cond, rr.compiled.clear, *rr.compiled.exprs.values())
        for expr in exprs:
            for point, secs in expr.windows if expr else ():
                if point is not None:
                    self.points.add((point, secs))
                elif rr.rule.enabled:  # the engine keeps per-point windows for enabled rules only
                    self.patterns.extend((rx, secs) for rx in rr.points)

    def lengths(self, point: str) -> list[float]:
        found = {s for p, s in self.points if p == point}
        found.update(s for rx, s in self.patterns if rx.match(point))
        return sorted(found)


def wants_of(rules: Iterable[RuleRuntime]) -> WindowWants:
    wants = WindowWants()
    for rr in rules:
        wants.add_rule(rr)
    return wants


@dataclass
class History:
    """Windows read from the journal, not yet in an engine."""

    windows: dict[WindowKey, Window]
    upto_seq: int  # journal rows up to this seq were read
    rows: int = 0  # rows scanned
    samples: int = 0  # samples put into windows
    truncated: bool = False  # the row budget cut the oldest part of the time range
    seconds: float = 0.0  # how long the read took

    def summary(self) -> dict[str, Any]:
        return {
            "windows": len(self.windows),
            "rows": self.rows,
            "samples": self.samples,
            "truncated": self.truncated,
            "ms": round(self.seconds * 1000, 1),
        }


def read_history(
    journal: JournalQueries,
    wants: WindowWants,
    now: float,
    upto_seq: int,
    max_rows: int = DEFAULT_MAX_ROWS,
    before_now: bool = False,
    opener: Opener | None = None,
) -> History:
    """The wanted windows filled with the journal's readings up to `upto_seq` (blocking: run it
    in a thread). `now` is the time the windows are measured back from; with `before_now` only
    readings older than `now` are read (a dry run's past, when later rows are its range).
    `opener` opens the sealed values (bytes) of the readings that fill a window, where the
    journal's connection hands them over as stored (`rules.replay.StoredJournal`)."""
    started = time.monotonic()
    out = History({}, upto_seq)
    if not wants or upto_seq <= 0:
        return out
    first = _first_seq_at(journal, now - wants.longest - MARGIN_S, upto_seq)
    if first is None:
        return out
    if upto_seq - first + 1 > max_rows:
        first, out.truncated = upto_seq - max_rows + 1, True
    route: dict[str, list[Window]] = {}
    windows = out.windows
    after = first - 1
    while after < upto_seq:
        rows = journal.history_page(after, upto_seq, PAGE, now if before_now else None)
        if not rows:
            break
        if opener is not None:
            rows = _opened(rows, lambda point: _route(route, windows, wants, point), opener)
        for _, ts, point, value in rows:
            wins = route.get(point)
            if wins is None:
                wins = _route(route, windows, wants, point)
            if wins and isinstance(value, int | float):
                fv = float(value)
                for w in wins:
                    w.add(ts, fv)
                out.samples += len(wins)
        out.rows += len(rows)
        after = rows[-1][0]
    # a point that matched a pattern but had no numeric reading gets no window (as live)
    for key in [k for k, w in windows.items() if w.empty()]:
        del windows[key]
    out.seconds = time.monotonic() - started
    return out


def _route(
    route: dict[str, list[Window]], windows: dict[WindowKey, Window], wants: WindowWants, point: str
) -> list[Window]:
    """The windows `point`'s readings fill (none: a point no window wants), created at its first."""
    wins = route.get(point)
    if wins is None:
        wins = route[point] = [windows.setdefault((point, s), Window(s)) for s in wants.lengths(point)]
    return wins


def _opened(
    rows: list[tuple[int, float, str, Any]], fills: Callable[[str], list[Window]], opener: Opener
) -> list[tuple[int, float, str, Any]]:
    """`rows` with the sealed values of the points that fill a window opened (one call for the
    page); a sealed value no window takes stays as it is (it is not a number)."""
    at = [i for i, r in enumerate(rows) if type(r[3]) is bytes and fills(r[2])]
    if not at:
        return rows
    values = opener([("value", rows[i][1], rows[i][2], rows[i][3]) for i in at])
    rows = list(rows)
    for i, value in zip(at, values, strict=True):
        seq, ts, point, _ = rows[i]
        rows[i] = (seq, ts, point, value)
    return rows


def _first_seq_at(journal: JournalQueries, since: float, upto_seq: int) -> int | None:
    """The first seq whose ts >= since, by bisection over seq (the journal has no ts index, and
    `seq` order follows time closely enough: MARGIN_S covers the drift)."""
    oldest = journal.min_seq()
    if oldest is None or oldest > upto_seq:
        return None
    lo, hi = oldest, upto_seq + 1  # invariant: answer in [lo, hi]; hi means "none"
    while lo < hi:
        mid = (lo + hi) // 2
        found = journal.first_at_or_after(mid)
        if found is None or found[0] > upto_seq:
            hi = mid
        elif found[1] >= since:
            hi = mid
        else:
            lo = found[0] + 1
    return lo if lo <= upto_seq else None
