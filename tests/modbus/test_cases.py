"""Golden cases as data: tests/cases/modbus/<case>/site.yaml plus expected.json (the request plan
per poll group) or expected.err (lines the located error must contain).

Adding a case is adding a folder. `UPDATE_GOLDEN=1 pytest tests/modbus/test_cases.py` rewrites
expected.json from the current planner (review the diff before committing it).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.config import ModbusDevice
from drivers.modbus.planner import greedy_max_insert, plan
from edge.config import ConfigError, load_site

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
    err_file = folder / "expected.err"
    if err_file.exists():
        with pytest.raises(ConfigError) as info:
            load_site(folder / "site.yaml")
        text = str(info.value)
        for line in err_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                assert line.strip() in text, f"{case}: expected {line!r} in:\n{text}"
        # every problem is located: file and line
        for problem in text.splitlines():
            assert re.match(r".*site\.yaml:\d+: ", problem), problem
        return
    site = load_site(folder / "site.yaml")
    got = {d.id: plans(d) for d in site.devices if isinstance(d, ModbusDevice)}
    expected_file = folder / "expected.json"
    if os.environ.get("UPDATE_GOLDEN") or not expected_file.exists():
        expected_file.write_text(json.dumps(got, indent=2) + "\n", encoding="utf-8")
    assert got == json.loads(expected_file.read_text(encoding="utf-8"))
    for device_plans in got.values():
        for p in device_plans:
            # the coalesced plan is never worse than Telegraf's greedy max_insert on the same map
            assert p["requests_per_cycle"] <= p["greedy_max_insert"] <= p["one_request_per_point"]
