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

# Each case: method, arguments, what it gives in en and in zh-CN (one node process per language).
CASES: list[tuple[str, list[Any], str, str]] = [
    ("relative", [1691200, 1000000], "in 8 days", "8 天后"),
    ("relative", [999820, 1000000], "3 minutes ago", "3 分钟前"),
    ("relative", [999999, 1000000], "1 second ago", "1 秒前"),
    ("relative", [1000000, 1000000], "just now", "刚刚"),
    ("fromNow", [5400], "in 2 hours", "2 小时后"),
    ("fromNow", [-30], "30 seconds ago", "30 秒前"),
    ("duration", [180], "3 minutes", "3 分钟"),
    ("duration", [60], "1 minute", "1 分钟"),
    ("duration", [262800], "3 days", "3 天"),
    ("duration", [None], "—", "—"),
    ("number", [22443.858], "22,444", "22,444"),
    ("number", [22443.858, 2], "22,443.86", "22,443.86"),
    ("number", [-0.0001, 1], "0.0", "0.0"),
    ("value", [22443.858, {"unit": "W"}], "22,444", "22,444"),
    ("value", [48210.0123, {"unit": "kWh"}], "48,210.01", "48,210.01"),
    ("value", [231.456, {"unit": "V"}], "231.5", "231.5"),
    ("value", [21.349, {"unit": "°C"}], "21.3", "21.3"),
    ("value", [7, {"type": "int", "unit": "kW"}], "7", "7"),
    ("value", [1744.71015625, {"unit": "kW", "precision": 1}], "1,744.7", "1,744.7"),
    ("value", [0.95123, {}], "0.951", "0.951"),
    ("value", [True, {}], "on", "是"),
    ("value", [None, {"unit": "W"}], "—", "—"),
    ("quantity", [22443.858, {"unit": "W"}], "22,444 W", "22,444 W"),
    ("quantity", [55.25, {"unit": "%"}], "55.3%", "55.3%"),
    ("dateTime", [1780000000], "2026-05-29 04:26:40", "2026-05-29 04:26:40"),
    ("date", [1780000000], "2026-05-29", "2026-05-29"),
    ("clock", [1780000000], "04:26:40", "04:26:40"),
    ("zone", [1780000000], "UTC+8", "UTC+8"),
    ("bytes", [536870912], "512.0 MiB", "512.0 MiB"),
    ("share", [0.99951], "99.95%", "99.95%"),
    ("share", [0.8734], "87.3%", "87.3%"),
    ("share", [1.0], "100.0%", "100.0%"),
    ("share", [None], "—", "—"),
]

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
    return list(
        run_node(
            SCRIPT % {"module": module, "lang": json.dumps(lang)}, [catalogue(lang), [c[:2] for c in CASES]]
        )
    )


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_format_module_in_both_languages(lang: str) -> None:
    got = run(lang)
    column = 2 if lang == "en" else 3
    wrong = [(c[0], c[1], c[column], have) for c, have in zip(CASES, got, strict=True) if c[column] != have]
    assert wrong == [], wrong


def test_every_duration_key_exists_in_both_catalogues() -> None:
    """The module asks for dur.{s,m,h,d}.{one,other} and rel.{ago,in,now}: a missing one would
    print its key on a page."""
    for lang in ("en", "zh-CN"):
        cat = json.loads((STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
        keys = [f"dur.{u}.{n}" for u in "smhd" for n in ("one", "other")] + ["rel.ago", "rel.in", "rel.now"]
        assert [k for k in keys if k not in cat] == [], lang
