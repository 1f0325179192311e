"""The shipped health pack on SpO2 and glucose events shaped as the BLE driver emits them: each
threshold on both sides, values the instrument could not measure, control-solution checks."""

from __future__ import annotations

from typing import Any

from edge.model import Event
from rules.model import compile_pack
from rules.replay import Replay
from tests.rules.helpers import SHANGHAI
from tests.rules.test_packs import PACKS, T0, replay


def spo2(ts: float, pct: float | None, **more: Any) -> Event:
    payload: dict[str, Any] = {"mode": "spot_check", "pulse_bpm": 80, "privacy": "sensitive", **more}
    if pct is None:
        payload["special"] = {"spo2_pct": "NaN"}
    else:
        payload["spo2_pct"] = pct
    return Event("spo2", "kiosk-spo2", "info", payload, T0 + ts)


def glucose(ts: float, mmol: float, **more: Any) -> Event:
    payload = {"glucose_mmol_l": mmol, "glucose_mg_dl": round(mmol * 18.016), "privacy": "sensitive", **more}
    return Event("glucose", "kiosk-glucose", "info", payload, T0 + ts)


def test_spo2_thresholds() -> None:
    out = replay(
        "health.yaml",
        [spo2(1, 98), spo2(2, 95), spo2(3, 94), spo2(4, 90), spo2(5, 89), spo2(6, None), spo2(7, 72)],
    )
    assert [(r, t) for r, _, _, t in out] == [
        ("spo2-low", 3),
        ("spo2-low", 4),
        ("spo2-very-low", 5),
        ("spo2-very-low", 7),  # a measured 72 %; the NaN at 6 is no reading and alerts nobody
    ]


def test_glucose_thresholds_fasting_and_control_solution() -> None:
    records = [
        glucose(1, 5.4),
        glucose(2, 3.8),
        glucose(3, 3.9),
        glucose(4, 2.9),
        glucose(5, 11.1),
        glucose(6, 8.0),  # random: fine
        glucose(7, 7.0, meal="fasting"),
        glucose(8, 6.9, meal="fasting"),
        glucose(9, 2.0, sample_type="control solution"),  # the meter's own check
        glucose(10, 3.0),
    ]
    out = replay("health.yaml", records)
    assert [(r, t) for r, _, _, t in out] == [
        ("glucose-low", 2),
        ("glucose-very-low", 4),
        ("glucose-high", 5),
        ("glucose-high", 7),
        ("glucose-low", 10),
    ]


def test_messages_quote_the_reading_inform_and_name_nobody() -> None:
    rules = compile_pack((PACKS / "health.yaml").read_text(encoding="utf-8"))
    rp = Replay(rules, SHANGHAI)
    (low,) = rp.feed([spo2(1, 86, resident="r-0042")])
    (sugar,) = rp.feed([glucose(2, 2.6, resident="r-0042")])
    assert "SpO2 86%" in low["message"] and "not a diagnosis" in low["message"] and "120" in low["message"]
    assert "2.6 mmol/L" in sugar["message"] and "单次读数不是诊断" in sugar["message"]
    assert "r-0042" not in low["message"] + sugar["message"]
