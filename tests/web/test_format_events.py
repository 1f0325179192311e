"""The alerts page's one-line rendering of events (edge/web/static/js/pages/alerts.js), run by
node with the UI's real catalogues in both languages: a vehicle passage and a blood pressure read
as sentences with labelled, formatted fields and the resident masked, a redacted payload says it
is hidden, an unknown kind falls back to labelled fields, repeats group and alerts never do."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.web.test_format_js import STATIC, catalogue, run_node

EVENTS: list[dict[str, Any]] = [
    {
        "seq": 9,
        "ts": 1.0,
        "kind": "vehicle_passage",
        "source": "gate-south",
        "severity": "info",
        "payload": {"plate": "沪A·23522", "direction": "in", "privacy": "personal"},
    },
    {
        "seq": 8,
        "ts": 1.0,
        "kind": "blood_pressure",
        "source": "kiosk-1",
        "severity": "info",
        "payload": {
            "systolic_mmhg": 149,
            "diastolic_mmhg": 95,
            "pulse_bpm": 74,
            "resident": "r-0340",
            "privacy": "sensitive",
        },
    },
    {
        "seq": 7,
        "ts": 1.0,
        "kind": "blood_pressure",
        "source": "kiosk-1",
        "severity": "info",
        "payload": {"privacy": "sensitive", "redacted": True},
    },
    {
        "seq": 6,
        "ts": 1.0,
        "kind": "gate_opened",
        "source": "gate-open-cmd-on-loop",
        "severity": "info",
        "payload": {"message": "gate-north: vehicle on the loop"},
    },
    {
        "seq": 5,
        "ts": 1.0,
        "kind": "device_state",
        "source": "env-courtyard",
        "severity": "warning",
        "payload": {"state": "offline", "previous": "online", "reason": "no answer"},
    },
    {
        "seq": 3,
        "ts": 1.0,
        "kind": "spo2",
        "source": "kiosk-1",
        "severity": "info",
        "payload": {
            "mode": "spot_check",
            "spo2_pct": 97,
            "pulse_bpm": 76,
            "resident": "r-1",
            "privacy": "sensitive",
        },
    },
    {
        "seq": 4,
        "ts": 1.0,
        "kind": "buffer_drop",
        "source": "site",
        "severity": "warning",
        "payload": {"dropped": 1200, "duration_s": 180},
    },
]

SCRIPT = """
import { state } from %(core)s;
import { describe, groupRepeats } from %(alerts)s;
const [cat, events] = JSON.parse(process.argv[1]);
state.cat = cat;
state.lang = %(lang)s;
state.site.timezone = 'Asia/Shanghai';
const names = { 'gate-south': '南门' };
const lines = events.map((e) => describe(e, (id) => names[id] || id));
const gate = (seq, kind = 'gate_opened') => ({ seq, ts: seq, kind, source: 'r', severity: 'info',
  payload: kind === 'alert' ? { state: 'fired', name: 'bp-high', message: 'high' } : { message: 'same' } });
const groups = groupRepeats([gate(5), gate(4), gate(3), gate(2, 'alert'), gate(1, 'alert')],
  (e) => describe(e, (id) => id)).map((g) => g.events.length);
console.log(JSON.stringify({ lines, groups }));
"""

LINES = {
    "en": [
        "南门: vehicle entering 沪A·23522",
        "Blood pressure 149/95 mmHg · pulse 74 bpm · resident ■■■■",
        "Blood pressure · content hidden (sensitive data)",
        "Gate opened · gate-north: vehicle on the loop",
        "Device state · online → offline · no answer",
        "Blood oxygen 97% · mode spot check · pulse 76 bpm · resident ■■■■",
        "Records dropped · dropped 1,200 · lasted 3 minutes",
    ],
    "zh-CN": [
        "南门 车辆驶入 沪A·23522",
        "血压 149/95 mmHg · 脉搏 74 bpm · 住户 ■■■■",
        "血压 · 内容已隐藏（敏感个人信息）",
        "道闸抬杆 · gate-north: vehicle on the loop",
        "设备状态 · 在线 → 离线 · no answer",
        "血氧 97% · 模式 单次测量 · 脉搏 76 bpm · 住户 ■■■■",
        "记录被丢弃 · 丢弃 1,200 · 持续 3 分钟",
    ],
}


def run(lang: str) -> dict[str, Any]:
    script = SCRIPT % {
        "core": json.dumps((STATIC / "js" / "core.js").as_uri()),
        "alerts": json.dumps((STATIC / "js" / "pages" / "alerts.js").as_uri()),
        "lang": json.dumps(lang),
    }
    return dict(run_node(script, [catalogue(lang), EVENTS]))


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_events_read_as_one_line_in_both_languages(lang: str) -> None:
    got = run(lang)
    assert got["lines"] == LINES[lang]
    # three identical gate events become one row; each alert stays a row of its own
    assert got["groups"] == [3, 1, 1]
