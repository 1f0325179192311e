"""Replacing a scheduled rule with a reset keeps one schedule chain, not two."""

from __future__ import annotations

import datetime as dt

from rules.engine import Engine
from rules.model import compile_pack
from tests.rules.helpers import SHANGHAI

T0 = dt.datetime(2026, 12, 1, 0, 0, tzinfo=SHANGHAI).timestamp()


def _rule(cond: str) -> object:
    pack = (
        "- id: nightly\n"
        "  when:\n"
        "    - schedule: '*/10 * * * *'\n"
        f"  if: {cond}\n"
        "  notify: always\n"
        "  then:\n"
        "    - event: {kind: tick, message: tick}\n"
    )
    return compile_pack(pack, "p.yaml")[0]


def test_a_reset_replacement_does_not_leave_the_old_schedule_running() -> None:
    engine = Engine(SHANGHAI)
    engine.add(_rule("True"), now=T0)
    engine.add(_rule("hour() >= 0"), now=T0 + 1)  # the logic changed: a reset, a new chain
    fired = [f.ts for f in engine.advance(T0 + 3600)]
    assert fired == [T0 + 600 * i for i in range(1, 7)], [t - T0 for t in fired]
