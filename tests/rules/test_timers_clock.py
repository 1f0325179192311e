"""Rule timers against lost time and steps of the wall clock, the engine driven with explicit clocks.

- `notify: repeat` runs at most one repeat it missed (the gateway stopped, the clock stepped
  forward), not every one of them at once; a replay still runs each at its deadline, as the live
  timers sent them.
"""

from __future__ import annotations

from typing import Any

from tests.rules.helpers import engine, r, run

REPEAT = {
    "id": "rep",
    "when": "tank.level",
    "if": "value > 50",
    "notify": "repeat",
    "every": "5s",
    "then": [{"alert": "still high {value}"}],
}


def _live(*docs: dict[str, Any], now: float = 0.0) -> Any:
    e = engine(*docs, now=now)
    e.one_late_repeat = True
    return e


def test_repeats_missed_run_once_and_the_next_is_every_from_now() -> None:
    e = _live(REPEAT)
    assert run(e, r(1000.0, "tank.level", 80)) == [("rep", "tank.level", "fired", 1000.0)]
    # 10 min without a timer run (stopped, or the clock stepped): one repeat, not 120
    assert [f.kind for f in e.advance(1600.0)] == ["repeat"]
    assert e.next_deadline() == 1605.0
    assert [(f.kind, f.ts) for f in e.advance(1605.0)] == [("repeat", 1605.0)]
    assert e.rules["rep"].states["tank.level"].last_notified == 1605.0


def test_a_repeat_run_on_time_keeps_its_cadence() -> None:
    e = _live(REPEAT)
    run(e, r(1000.0, "tank.level", 80))
    # run a little late (a busy loop): the next stays on the 5 s grid
    assert [(f.kind, f.ts) for f in e.advance(1005.2)] == [("repeat", 1005.0)]
    assert e.next_deadline() == 1010.0


def test_a_replay_runs_each_repeat_at_its_deadline() -> None:
    e = engine(REPEAT)
    run(e, r(1000.0, "tank.level", 80))
    assert [f.ts for f in e.advance(1020.0)] == [1005.0, 1010.0, 1015.0, 1020.0]
