"""Golden cases as data: tests/cases/modbus/<case>/site.yaml plus expected.json (the request plan
per poll group) or expected.err (every located problem), checked by tests/support/golden.py.

Adding a case is adding a folder. `UPDATE_GOLDEN=1 pytest tests/modbus/test_cases.py` writes
expected.json from the current planner (review the diff before committing it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.config import ModbusDevice
from drivers.modbus.planner import greedy_max_insert, plan
from edge.config import load_site
from tests.support.golden import assert_json, assert_problems

CASES = Path(__file__).resolve().parents[1] / "cases" / "modbus"


def plans(dev: ModbusDevice) -> list[dict[str, Any]]:
    groups: dict[float, list[Any]] = {}
    for p in dev.points:
        groups.setdefault(p.poll or dev.poll, []).append(p)
    out = []
    for interval in sorted(groups):
        reqs = plan(
            groups[interval],
            max_gap=dev.max_gap,
            max_gap_bits=dev.max_gap_bits,
            max_registers=dev.max_registers,
            max_bits=dev.max_bits,
        )
        out.append(
            {
                "poll": interval,
                "requests_per_cycle": len(reqs),
                "one_request_per_point": len(groups[interval]),
                "greedy_max_insert": len(greedy_max_insert(groups[interval], max_insert=dev.max_gap)),
                "registers_read": sum(r.count for r in reqs),
                "requests": [r.as_dict() for r in reqs],
            }
        )
    return out


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_case(case: str) -> None:
    folder = CASES / case
    if (folder / "expected.err").exists():
        assert_problems(folder)
        return
    site = load_site(folder / "site.yaml")
    got = {d.id: plans(d) for d in site.devices if isinstance(d, ModbusDevice)}
    assert_json(folder / "expected.json", got)
    for device_plans in got.values():
        for p in device_plans:
            # the coalesced plan is never worse than Telegraf's greedy max_insert on the same map
            assert p["requests_per_cycle"] <= p["greedy_max_insert"] <= p["one_request_per_point"]
