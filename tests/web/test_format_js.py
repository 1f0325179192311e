"""The UI's formatting module (edge/web/static/js/format.js) run by node with the UI's real
catalogues, in both languages: past and future durations, plain durations, rounding to a point's
precision (declared or derived from the unit), units, ISO-like dates in the site's zone, sizes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import require_tool

STATIC = Path(__file__).resolve().parents[2] / "edge" / "web" / "static"

# Each case: [method, args]; evaluated in both languages by one node process.
CASES: list[tuple[str, list[Any]]] = [
    ("relative", [1_000_000 + 8 * 86400, 1_000_000]),  # in 8 days
    ("relative", [1_000_000 - 180, 1_000_000]),  # 3 minutes ago
    ("relative", [1_000_000 - 1, 1_000_000]),  # 1 second ago
    ("relative", [1_000_000, 1_000_000]),  # now
    ("fromNow", [5400]),  # in 2 hours (90 min rounds to hours)
    ("fromNow", [-30]),  # 30 seconds ago
    ("duration", [180]),
    ("duration", [60]),
    ("duration", [3 * 86400 + 3600]),
    ("duration", [None]),
    ("number", [22443.858]),
    ("number", [22443.858, 2]),
    ("number", [-0.0001, 1]),
    ("value", [22443.858, {"unit": "W"}]),
    ("value", [48210.0123, {"unit": "kWh"}]),
    ("value", [231.456, {"unit": "V"}]),
    ("value", [21.349, {"unit": "°C"}]),
    ("value", [7, {"type": "int", "unit": "kW"}]),
    ("value", [1744.71015625, {"unit": "kW", "precision": 1}]),
    ("value", [0.95123, {}]),
    ("value", [True, {}]),
    ("value", [None, {"unit": "W"}]),
    ("quantity", [22443.858, {"unit": "W"}]),
    ("quantity", [55.25, {"unit": "%"}]),
    ("dateTime", [1_780_000_000]),
    ("date", [1_780_000_000]),
    ("clock", [1_780_000_000]),
    ("zone", [1_780_000_000]),
    ("bytes", [512 * 1024 * 1024]),
]

EXPECTED = {
    "en": [
        "in 8 days",
        "3 minutes ago",
        "1 second ago",
        "just now",
        "in 2 hours",
        "30 seconds ago",
        "3 minutes",
        "1 minute",
        "3 days",
        "—",
        "22,444",
        "22,443.86",
        "0.0",
        "22,444",
        "48,210.01",
        "231.5",
        "21.3",
        "7",
        "1,744.7",
        "0.951",
        "on",
        "—",
        "22,444 W",
        "55.3%",
        "2026-05-29 04:26:40",
        "2026-05-29",
        "04:26:40",
        "UTC+8",
        "512.0 MiB",
    ],
    "zh-CN": [
        "8 天后",
        "3 分钟前",
        "1 秒前",
        "刚刚",
        "2 小时后",
        "30 秒前",
        "3 分钟",
        "1 分钟",
        "3 天",
        "—",
        "22,444",
        "22,443.86",
        "0.0",
        "22,444",
        "48,210.01",
        "231.5",
        "21.3",
        "7",
        "1,744.7",
        "0.951",
        "是",
        "—",
        "22,444 W",
        "55.3%",
        "2026-05-29 04:26:40",
        "2026-05-29",
        "04:26:40",
        "UTC+8",
        "512.0 MiB",
    ],
}

SCRIPT = """
import { createFormat } from %(module)s;
const [cat, cases] = JSON.parse(process.argv[1]);
const t = (k, p) => {
  let s = cat[k];
  if (s === undefined) return k;
  return p ? s.replace(/\\{(\\w+)\\}/g, (m, x) => (p[x] !== undefined ? String(p[x]) : m)) : s;
};
const f = createFormat({ lang: %(lang)s, timeZone: 'Asia/Shanghai', t });
console.log(JSON.stringify(cases.map(([m, args]) => f[m](...args))));
"""


def run_node(script: str, data: Any) -> Any:
    """What the ES-module `script` prints (JSON), given `data` as JSON in process.argv[1]."""
    out = subprocess.run(
        [
            require_tool("node", "Debian package nodejs"),
            "--input-type=module",
            "-e",
            script,
            json.dumps(data),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def catalogue(lang: str) -> dict[str, str]:
    return dict(json.loads((STATIC / "i18n" / f"{lang}.json").read_text("utf-8")))


def run(lang: str) -> list[str]:
    module = json.dumps((STATIC / "js" / "format.js").as_uri())
    return list(run_node(SCRIPT % {"module": module, "lang": json.dumps(lang)}, [catalogue(lang), CASES]))


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_format_module_in_both_languages(lang: str) -> None:
    got = run(lang)
    wrong = [
        (method, args, want, have)
        for (method, args), want, have in zip(CASES, EXPECTED[lang], got, strict=True)
        if want != have
    ]
    assert wrong == [], wrong


def test_every_duration_key_exists_in_both_catalogues() -> None:
    """The module asks for dur.{s,m,h,d}.{one,other} and rel.{ago,in,now}: a missing one would
    print its key on a page."""
    for lang in ("en", "zh-CN"):
        cat = json.loads((STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
        keys = [f"dur.{u}.{n}" for u in "smhd" for n in ("one", "other")] + ["rel.ago", "rel.in", "rel.now"]
        assert [k for k in keys if k not in cat] == [], lang
