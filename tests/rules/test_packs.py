"""The shipped rule packs (deploy/rules) on recorded data, and `edge rules check|test|import|export`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from edge.model import Event, Reading
from rules.model import compile_pack
from rules.replay import Replay
from tests.rules.helpers import SHANGHAI
from tests.support.cli import ROOT, edge_cli
from tests.support.site import site_file

PACKS = ROOT / "deploy" / "rules"
T0 = dt.datetime(2026, 12, 1, 0, 0, tzinfo=SHANGHAI).timestamp()  # local midnight


def firings(pack: str, records: Sequence[Reading | Event]) -> list[dict[str, Any]]:
    """What the shipped `pack` does with `records`, replayed in time order in Asia/Shanghai."""
    rules = compile_pack((PACKS / pack).read_text(encoding="utf-8"), pack)
    rp = Replay(rules, SHANGHAI)
    rp.feed(sorted(records, key=lambda r: r.ts))
    rp.finish()
    return rp.firings


def replay(pack: str, records: Sequence[Reading | Event]) -> list[tuple[str, str, str, float]]:
    return [(f["rule"], f["key"], f["kind"], f["ts"] - T0) for f in firings(pack, records)]


def series(point: str, values: list[Any], every: float, start: float = 0) -> list[Reading]:
    return [Reading(T0 + start + i * every, point, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("pack", sorted(p.name for p in PACKS.glob("*.yaml")))
def test_every_shipped_pack_passes_edge_rules_check(pack: str) -> None:
    out = edge_cli("rules", "check", str(PACKS / pack))
    assert out.returncode == 0, out.stderr
    assert "rules OK" in out.stdout


def test_parking_pack() -> None:
    records: list[Reading | Event] = [
        *series("gate-north.loop_occupied", [False, True, False], 10),
        Event("vehicle", "gate-south", "info", {"plate": "沪A88888", "direction": "in"}, T0 + 40),
        Event("vehicle", "gate-south", "info", {"plate": "沪A88888", "direction": "in"}, T0 + 45),
        Event("vehicle", "gate-south", "info", {"plate": "京C00001", "direction": "in"}, T0 + 50),
        *series("gate-north.barrier_open", [True, True, True, True, False], 60, start=100),
    ]
    out = replay("parking.yaml", records)
    assert out == [
        ("gate-open-on-loop", "gate-north.loop_occupied", "fired", 10),
        ("gate-open-on-loop", "gate-north.loop_occupied", "cleared", 20),
        ("gate-open-permitted-plate", "gate-south", "fired", 40),
        ("gate-open-permitted-plate", "gate-south", "fired", 45),  # every permitted car, not just the first
        ("barrier-stuck-open", "gate-north.barrier_open", "fired", 220),  # open for 2 minutes
        ("barrier-stuck-open", "gate-north.barrier_open", "cleared", 340),
    ]


def test_parking_pack_leaves_gates_with_an_open_command_coil_to_their_own_rule() -> None:
    records: list[Reading | Event] = [
        Reading(T0, "gate-south.open_cmd", False),  # a Modbus controller: opened through its coil
        *series("gate-south.loop_occupied", [False, True, False], 10, start=1),
    ]
    assert [r for r, *_ in replay("parking.yaml", records)] == []
    assert [f["kind"] for f in firings("demo-gate.yaml", records)][:1] == ["fired"]


def test_energy_pack_waits_for_all_three_phases() -> None:
    out = replay("energy.yaml", [Reading(T0, "meter-x.current_a", 10.0)])
    assert [k for _, _, k, _ in out if k == "error"] == []


def test_waste_pack_fill_hysteresis_and_not_emptied() -> None:
    fill = [50, 88, 90, 91, 75, 65, 59, 20]  # one reading a minute
    out = replay("waste.yaml", series("bin-east-1.fill_pct", fill, 60))
    assert [(r, k, t) for r, _, k, t in out] == [("bin-full", "fired", 120), ("bin-full", "cleared", 360)]
    # a bin at 40 % for 3 days without being emptied: fires at 48 h, repeats every 12 h
    out = replay("waste.yaml", series("bin-west-2.fill_pct", [40] * 73, 3600))
    hits = [(k, t / 3600) for r, _, k, t in out if r == "bin-not-emptied"]
    assert hits == [("fired", 48), ("fired", 60), ("fired", 72)]


def test_energy_pack() -> None:
    records: list[Reading | Event] = [
        # meter-b2 reports energy, then goes silent; meter-b1 keeps reporting
        *series("meter-b2.energy_import", [1.0, 1.1], 60),
        *series("meter-b1.energy_import", [100 + i for i in range(12)], 300),
        # 01:00-01:45 local: 25 kW at night, every 5 min
        *series("meter-b1.active_power", [25000] * 10, 300, start=3600),
        # phase currents: c much lower than a/b for 10 minutes
        *series("meter-b3.current_b", [10.0] * 11, 60, start=600),
        *series("meter-b3.current_c", [3.0] * 11, 60, start=600),
        *series("meter-b3.current_a", [10.0] * 11, 60, start=601),
        # 06:00 check: 60 kWh used since 00:00
        *series("meter-b1.energy_import", [200.0, 230.0, 260.0], 3600, start=3 * 3600),
        Reading(T0 + 6 * 3600 + 1, "other.x", 0),  # the replay runs to just after 06:00
    ]
    out = replay("energy.yaml", records)
    fired = {(r, k) for r, k, kind, _ in out if kind == "fired"}
    offline = [(k, kind, t) for r, k, kind, t in out if r == "meter-offline"]
    # b2 last reported at 60 s, b1 at 3300 s: each fires 10 minutes later; b1 clears when it is back
    assert offline == [
        ("meter-b2.energy_import", "fired", 660),
        ("meter-b1.energy_import", "fired", 3900),
        ("meter-b1.energy_import", "cleared", 3 * 3600),  # hourly readings from 03:00: each gap > 10 min
        ("meter-b1.energy_import", "fired", 3 * 3600 + 600),
        ("meter-b1.energy_import", "cleared", 4 * 3600),
        ("meter-b1.energy_import", "fired", 4 * 3600 + 600),
        ("meter-b1.energy_import", "cleared", 5 * 3600),
        ("meter-b1.energy_import", "fired", 5 * 3600 + 600),
    ]
    night = [t for r, _, kind, t in out if r == "night-consumption" and kind == "fired"]
    assert night and 3600 + 1800 <= night[0] <= 3600 + 2700
    assert ("phase-imbalance", "meter-b3.current_a") in fired
    assert ("night-energy-check", "") in fired
    check = [t for r, _, _, t in out if r == "night-energy-check"]
    assert check == [6 * 3600]  # 06:00 Asia/Shanghai


def test_health_pack_categories() -> None:
    def bp(ts: float, sys_: int, dia: int) -> Event:
        return Event(
            "blood_pressure", "kiosk-1", "info", {"systolic_mmhg": sys_, "diastolic_mmhg": dia}, T0 + ts
        )

    out = replay(
        "health.yaml", [bp(1, 185, 100), bp(2, 150, 85), bp(3, 120, 80), bp(4, 85, 55), bp(5, 130, 125)]
    )
    assert [(r, t) for r, _, _, t in out] == [
        ("bp-very-high", 1),
        ("bp-high", 2),
        ("bp-low", 4),
        ("bp-very-high", 5),
    ]
    rules = compile_pack((PACKS / "health.yaml").read_text(encoding="utf-8"))
    rp = Replay(rules, SHANGHAI)
    (f,) = rp.feed([bp(1, 185, 100)])
    assert "185/100" in f["message"] and "not a diagnosis" in f["message"] and "r-" not in f["message"]


def test_edge_rules_test_prints_json_lines_from_buffer_tail_records(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    lines = [
        {
            "seq": i + 1,
            "ts": T0 + i * 60,
            "type": "reading",
            "point": "bin-1.fill_pct",
            "value": v,
            "quality": "good",
        }
        for i, v in enumerate([50, 90, 92, 95, 40])
    ]
    lines.append(
        {
            "seq": 99,
            "ts": T0 + 400,
            "type": "event",
            "kind": "blood_pressure",
            "source": "kiosk-1",
            "severity": "info",
            "payload": {"systolic_mmhg": 190, "diastolic_mmhg": 95},
        }
    )
    text = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\nnot json\n"
    records.write_text(text, encoding="utf-8")
    for pack in ("waste.yaml", "health.yaml"):
        out = edge_cli(
            "rules", "test", str(PACKS / pack), "--input", str(records), "--timezone", "Asia/Shanghai"
        )
        assert out.returncode == 0, out.stderr
        assert "records.jsonl:7: skipped" in out.stderr
        got = [json.loads(line) for line in out.stdout.splitlines()]
        assert all(set(g) == {"rule", "ts", "kind", "message"} for g in got)
        if pack == "waste.yaml":
            assert [(g["rule"], g["kind"], g["ts"] - T0) for g in got] == [
                ("bin-full", "fired", 120),
                ("bin-full", "cleared", 240),
            ]
        else:
            assert [(g["rule"], g["kind"]) for g in got] == [("bp-very-high", "fired")]


def test_edge_rules_check_lists_every_error_and_exits_1(tmp_path: Path) -> None:
    pack = tmp_path / "bad.yaml"
    pack.write_text(
        "rules:\n"
        "  - id: one\n"
        "    when: bin-*.fill_pct\n"
        "    if: value > 80 and vlaue < 2\n"
        "  - id: two\n"
        "    when: x.y\n"
        "    if: ().__class__\n"
        "    then: [{alert: '{value.__class__}'}]\n"
        "  - id: three\n"
        "    when: nonsense\n",
        encoding="utf-8",
    )
    out = edge_cli("rules", "check", str(pack))
    assert out.returncode == 1
    err = out.stderr.splitlines()
    assert f"{pack}:4: rule one:if: line 1, column 16: unknown name 'vlaue'" in err[0]
    assert f"{pack}:7: rule two:if:" in err[1] and "double underscores" in err[1]
    assert "rule two:then[0].alert.message" in err[2]
    assert "rule three:when[0]" in err[3]
    assert len(err) == 4


def test_edge_rules_import_then_export_round_trip(tmp_path: Path) -> None:
    config = site_file(tmp_path, {"devices": []})
    out = edge_cli("rules", "import", "-c", str(config), str(PACKS / "waste.yaml"))
    assert out.returncode == 0, out.stderr
    assert "imported bin-full (version 1)" in out.stdout
    out = edge_cli("rules", "export", "-c", str(config))
    assert out.returncode == 0, out.stderr
    exported = compile_pack(out.stdout)
    assert [r.rule.id for r in exported] == ["bin-full", "bin-not-emptied"]
    assert exported[0].rule.for_ == 60 and exported[0].rule.clear_if == "value < 60"


def test_rules_section_of_the_site_file_is_validated_with_location(tmp_path: Path) -> None:
    from edge.config import ConfigError, load_site

    config = site_file(tmp_path, {"devices": [], "rules": {"packz": ["a.yaml"], "max_actions_per_minute": 0}})
    with pytest.raises(ConfigError) as err:
        load_site(config)
    text = str(err.value)
    assert "rules.packz" in text and "rules.max_actions_per_minute" in text
