"""Planner properties on random maps: every point covered, limits kept, never worse than greedy."""

from __future__ import annotations

import random
from dataclasses import dataclass

from drivers.modbus.planner import SplitMemory, greedy_max_insert, plan, split_request


@dataclass(frozen=True)
class P:
    name: str
    table: str
    address: int
    count: int


def random_map(rng: random.Random) -> list[P]:
    pts, address = [], rng.randrange(0, 100)
    for i in range(rng.randrange(1, 120)):
        table = rng.choice(["holding", "holding", "input", "coil"])
        count = 1 if table == "coil" else rng.choice([1, 1, 2, 2, 4])
        pts.append(P(f"p{i}", table, address, count))
        address += rng.choice([0, 1, 2, 3, 7, 12, 40, 200]) + (count if rng.random() < 0.9 else 0)
    return pts


def test_random_maps_are_covered_within_limits_and_never_worse_than_greedy() -> None:
    rng = random.Random(42)
    for _ in range(300):
        pts = random_map(rng)
        max_gap = rng.choice([0, 2, 10, 30])
        limit = rng.choice([8, 32, 125])
        reqs = plan(pts, max_gap=max_gap, max_gap_bits=max_gap, max_registers=limit, max_bits=limit)
        greedy = greedy_max_insert(pts, max_insert=max_gap, max_registers=limit, max_bits=limit)
        by_name = {p.name: p for p in pts}
        covered = [n for r in reqs for n in r.points]
        assert sorted(covered) == sorted(by_name)  # each point read exactly once
        for r in reqs:
            assert r.count <= limit
            for n in r.points:
                p = by_name[n]
                assert p.table == r.table and r.start <= p.address and p.address + p.count <= r.end
        assert len(reqs) <= len(greedy)
        if len(reqs) == len(greedy):
            assert sum(r.count for r in reqs) <= sum(r.count for r in greedy)


def test_split_memory_cuts_at_holes_then_point_by_point() -> None:
    pts = [P("a", "holding", 0, 2), P("b", "holding", 2, 1), P("c", "holding", 6, 2)]
    splits = SplitMemory()
    (req,) = plan(pts, splits=splits)
    assert (req.start, req.count) == (0, 8)
    assert split_request(req, pts, splits)  # the hole at 3..5
    assert [(r.start, r.count) for r in plan(pts, splits=splits)] == [(0, 3), (6, 2)]
    first = plan(pts, splits=splits)[0]
    assert split_request(first, pts, splits)  # contiguous but refused: point by point
    assert [(r.start, r.count) for r in plan(pts, splits=splits)] == [(0, 2), (2, 1), (6, 2)]
    single = plan(pts, splits=splits)[0]
    assert not split_request(single, pts, splits)  # one point: nothing left to split
