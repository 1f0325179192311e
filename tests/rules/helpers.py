"""Build an engine from rule documents and run records through it; the site and pack the races
between a pack import and a rule change run on."""

from __future__ import annotations

import datetime as dt
from typing import Any

from edge.model import Event, Reading
from rules.cron import site_tz
from rules.engine import Engine
from rules.model import parse_rule

SHANGHAI = site_tz("Asia/Shanghai")

# one point the pack's rules watch, and a pack of three rules on it: what a pack import being
# stored while a rule changes needs
PACK_RACE_SITE: dict[str, Any] = {
    "devices": [
        {
            "id": "m",
            "driver": "sim",
            "points": [{"name": "v", "signal": "constant", "value": 0, "interval": "1h"}],
        }
    ]
}
THREE_RULE_PACK = "rules:\n" + "".join(
    f"  - {{id: r{i}, name: from-pack, when: m.v, if: value > {i}, then: [{{alert: pack}}]}}\n"
    for i in range(3)
)


def engine(*docs: dict[str, Any], tz: dt.tzinfo = dt.UTC, now: float = 0.0) -> Engine:
    e = Engine(tz)
    e.now = now
    for d in docs:
        e.add(parse_rule(d), now)
    return e


def run(e: Engine, *records: Reading | Event) -> list[tuple[str, str, str, float]]:
    """(rule, key, kind, ts) of each firing."""
    return [(f.rule.id, f.key, f.kind, f.ts) for f in e.process(records)]


def r(ts: float, point: str, value: Any, quality: int = 0) -> Reading:
    return Reading(ts, point, value, quality)
