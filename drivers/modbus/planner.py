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


@dataclass
class SplitMemory:
    """Addresses (per table) that a request must not span: the device answered 'illegal address'."""

    breaks: dict[str, set[int]] = field(default_factory=dict)

    def add(self, table: str, address: int) -> None:
        self.breaks.setdefault(table, set()).add(address)

    def crosses(self, table: str, start: int, end: int) -> bool:
        return any(start < b < end for b in self.breaks.get(table, ()))

    def __len__(self) -> int:
        return sum(len(v) for v in self.breaks.values())


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


def split_request(req: Request, points: Sequence[PlannedPoint], splits: SplitMemory) -> bool:
    """Remember to cut `req` at its holes (or between every point when it has none).

    Returns False when there is nothing left to split (one point): the point itself is refused.
    """
    pts = sorted((p for p in points if p.name in req.points), key=lambda p: p.address)
    if len(pts) <= 1:
        return False
    before = len(splits)
    end = pts[0].address + pts[0].count
    for p in pts[1:]:
        if p.address > end:  # a hole: the device may refuse to read across it
            splits.add(req.table, p.address)
        end = max(end, p.address + p.count)
    if len(splits) == before:  # contiguous yet refused: read point by point from now on
        for p in pts[1:]:
            if p.address > pts[0].address:
                splits.add(req.table, p.address)
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
