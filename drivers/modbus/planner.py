"""Coalesced read planning: a device's points become as few requests as the protocol allows.

Per table, points sorted by address are cut into consecutive groups; a group is one request. A
group is valid when it spans at most `limit` registers (125) or bits (2000), no hole inside it is
wider than `max_gap`, and it does not cross an address the device refused to read across (the
"split memory", learnt from "illegal data address" answers). Among valid cuts, a dynamic
programme picks the fewest requests and, among those, the fewest registers read — so it never
does worse than Telegraf's greedy `max_insert` (which is one particular valid cut).

Pure and synchronous: the benchmark and the golden cases call it directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

TABLE_ORDER = ("coil", "discrete", "holding", "input")


class PlannedPoint(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def table(self) -> str: ...
    @property
    def address(self) -> int: ...
    @property
    def count(self) -> int: ...


@dataclass(frozen=True)
class Request:
    """One read request: FC1/2/3/4 of `count` items from `start`, covering `points`."""

    table: str
    start: int
    count: int
    points: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.start + self.count

    def as_dict(self) -> dict[str, object]:
        return {"table": self.table, "start": self.start, "count": self.count, "points": list(self.points)}


#: cycles after which a learnt split is dropped and the merged read tried again, doubling at each
#: refusal of it up to the cap (a device that refuses for good costs one refused request per
#: merged read every SPLIT_RETRY_MAX cycles; one that refused while it booted is merged again soon)
SPLIT_RETRY_FIRST = 8
SPLIT_RETRY_MAX = 256


@dataclass
class SplitMemory:
    """Addresses (per table) that a request must not span: the device answered 'illegal address'.

    A split is not for good: after SPLIT_RETRY_FIRST poll cycles it is dropped (`expire`) and the
    merged read tried again; refused again, the split comes back for twice as long (up to
    SPLIT_RETRY_MAX cycles); answered, it is forgotten (`settle`). A refused request over a
    contiguous run of points (no hole to blame) is split only when it is refused again."""

    breaks: dict[str, set[int]] = field(default_factory=dict)
    # (table, address) -> (refusals so far, the cycle at which the merged read is tried again)
    learnt: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    on_trial: set[tuple[str, int]] = field(default_factory=set)  # dropped, merged read not yet answered
    suspects: set[tuple[str, int, int]] = field(default_factory=set)  # contiguous runs refused once
    _next_due: int = 1 << 60

    def add(self, table: str, address: int, now: int = 0) -> None:
        key = (table, address)
        refusals = self.learnt.get(key, (0, 0))[0] + 1
        due = now + min(SPLIT_RETRY_MAX, SPLIT_RETRY_FIRST << min(refusals - 1, 30))
        self.learnt[key] = (refusals, due)
        self.on_trial.discard(key)
        self._next_due = min(self._next_due, due)
        self.breaks.setdefault(table, set()).add(address)

    def crosses(self, table: str, start: int, end: int) -> bool:
        return any(start < b < end for b in self.breaks.get(table, ()))

    def __len__(self) -> int:
        return sum(len(v) for v in self.breaks.values())

    def expire(self, now: int) -> bool:
        """Drop the splits whose time is up, so the next plan tries the merged read again.
        True when one was dropped (the plans must be made again)."""
        if now < self._next_due:
            return False
        dropped = False
        self._next_due = 1 << 60
        for key, (_, due) in self.learnt.items():
            table, address = key
            if key in self.on_trial or address not in self.breaks.get(table, ()):
                continue
            if due <= now:
                self.breaks[table].discard(address)
                self.on_trial.add(key)
                dropped = True
            else:
                self._next_due = min(self._next_due, due)
        return dropped

    def proven(self, req: Request, points: Sequence[PlannedPoint]) -> bool:
        """Whether a refusal of `req` ('illegal data address') is reason to split it: it spans a
        hole, it was refused before (the same run, or a split learnt inside it), or it is refused
        again. A first refusal of a contiguous run is only noted: a device that refuses for a
        moment (booting) does not get read point by point."""
        pts = sorted((p for p in points if p.name in req.points), key=lambda p: p.address)
        if len(pts) <= 1:
            return True  # nothing to split: split_request says the point itself is refused
        end = pts[0].address + pts[0].count
        for p in pts[1:]:
            if p.address > end:
                return True  # a hole: the likely reason, and cutting there costs little
            end = max(end, p.address + p.count)
        run = (req.table, req.start, req.end)
        if run in self.suspects or any(
            (req.table, p.address) in self.learnt for p in pts if p.address > req.start
        ):
            self.suspects.discard(run)
            return True
        self.suspects.add(run)
        return False

    def settle(self, req: Request) -> None:
        """`req` was answered: a split on trial inside it is forgotten (the device reads across
        it now), and so is a single refusal of it."""
        self.suspects.discard((req.table, req.start, req.end))
        for key in [k for k in self.on_trial if k[0] == req.table and req.start < k[1] < req.end]:
            self.on_trial.discard(key)
            del self.learnt[key]


def plan(
    points: Iterable[PlannedPoint],
    *,
    max_gap: int = 125,
    max_gap_bits: int = 2000,
    max_registers: int = 125,
    max_bits: int = 2000,
    splits: SplitMemory | None = None,
) -> list[Request]:
    """The requests that read every point in `points`, in table then address order."""
    by_table: dict[str, list[PlannedPoint]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    out: list[Request] = []
    for table in sorted(by_table, key=lambda t: TABLE_ORDER.index(t) if t in TABLE_ORDER else 99):
        bits = table in ("coil", "discrete")
        out.extend(
            _plan_table(
                table,
                sorted(by_table[table], key=lambda p: (p.address, p.address + p.count, p.name)),
                max_gap_bits if bits else max_gap,
                max_bits if bits else max_registers,
                splits or SplitMemory(),
            )
        )
    return out


def _plan_table(
    table: str, pts: Sequence[PlannedPoint], max_gap: int, limit: int, splits: SplitMemory
) -> list[Request]:
    n = len(pts)
    breaks = splits.breaks.get(table, set())
    inf = (1 << 60, 1 << 60)
    # best[i] = (requests, registers) to read pts[:i]; back[i] = where the last group starts
    best: list[tuple[int, int]] = [(0, 0)] + [inf] * n
    back = [0] * (n + 1)
    for j in range(n):
        if best[j] == inf:
            continue
        start = pts[j].address
        end = pts[j].address + pts[j].count
        for i in range(j + 1, n + 1):
            p = pts[i - 1]
            if i > j + 1:
                if p.address in breaks and p.address > start:
                    break  # the device refused a read across this address before
                if p.address - end > max_gap:
                    break  # every later point is further away still
                end = max(end, p.address + p.count)
            if end - start > limit:
                break
            cand = (best[j][0] + 1, best[j][1] + (end - start))
            if cand < best[i]:
                best[i] = cand
                back[i] = j
    groups: list[Request] = []
    i = n
    while i > 0:
        j = back[i]
        grp = pts[j:i]
        start = grp[0].address
        end = max(p.address + p.count for p in grp)
        groups.append(Request(table, start, end - start, tuple(p.name for p in grp)))
        i = j
    groups.reverse()
    return groups


def split_request(req: Request, points: Sequence[PlannedPoint], splits: SplitMemory, now: int = 0) -> bool:
    """Remember to cut `req` at its holes (or between every point when it has none), from poll
    cycle `now` (the splits expire: see SplitMemory).

    Returns False when there is nothing left to split (one point): the point itself is refused.
    """
    pts = sorted((p for p in points if p.name in req.points), key=lambda p: p.address)
    if len(pts) <= 1:
        return False
    before = len(splits)
    end = pts[0].address + pts[0].count
    for p in pts[1:]:
        if p.address > end:  # a hole: the device may refuse to read across it
            splits.add(req.table, p.address, now)
        end = max(end, p.address + p.count)
    if len(splits) == before:  # contiguous yet refused: read point by point from now on
        for p in pts[1:]:
            if p.address > pts[0].address:
                splits.add(req.table, p.address, now)
    return len(splits) > before


def greedy_max_insert(
    points: Iterable[PlannedPoint], *, max_insert: int = 10, max_registers: int = 125, max_bits: int = 2000
) -> list[Request]:
    """Telegraf's `max_insert` optimisation, for comparison: start a new request when the gap
    exceeds `max_insert` or the request would pass the size limit."""
    by_table: dict[str, list[PlannedPoint]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    out: list[Request] = []
    for table, pts in by_table.items():
        limit = max_bits if table in ("coil", "discrete") else max_registers
        pts = sorted(pts, key=lambda p: (p.address, p.count))
        cur: list[PlannedPoint] = []
        start = end = 0
        for p in pts:
            if cur and (p.address - end <= max_insert) and (max(end, p.address + p.count) - start <= limit):
                cur.append(p)
                end = max(end, p.address + p.count)
                continue
            if cur:
                out.append(Request(table, start, end - start, tuple(q.name for q in cur)))
            cur, start, end = [p], p.address, p.address + p.count
        if cur:
            out.append(Request(table, start, end - start, tuple(q.name for q in cur)))
    return out
