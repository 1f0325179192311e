"""Build an engine from rule documents and run records through it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from edge.model import Event, Reading
from rules.cron import site_tz
from rules.engine import Engine
from rules.model import parse_rule

SHANGHAI = site_tz("Asia/Shanghai")


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
