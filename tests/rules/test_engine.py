"""The engine core: every trigger type, for:, clear_if, notification modes, windows, schedules."""

from __future__ import annotations

import datetime as dt

from edge.model import Event
from tests.rules.helpers import SHANGHAI, engine, r, run


def test_point_trigger_fires_once_and_clears_when_condition_goes_false() -> None:
    e = engine({"id": "hot", "when": "dev.temp", "if": "value > 30"})
    assert run(e, r(1, "dev.temp", 20)) == []
    assert run(e, r(2, "dev.temp", 31)) == [("hot", "dev.temp", "fired", 2)]
    assert run(e, r(3, "dev.temp", 35)) == []  # once: no second firing while active
    assert run(e, r(4, "dev.temp", 10)) == [("hot", "dev.temp", "cleared", 4)]
    assert run(e, r(5, "dev.temp", 40)) == [("hot", "dev.temp", "fired", 5)]


def test_pattern_trigger_keeps_one_state_per_point_and_ignores_others() -> None:
    e = engine({"id": "full", "when": "bin-*.fill_pct", "if": "value >= 85"})
    out = run(e, r(1, "bin-1.fill_pct", 90), r(2, "bin-2.fill_pct", 95), r(3, "bin-1.fill_pct", 99))
    assert out == [("full", "bin-1.fill_pct", "fired", 1), ("full", "bin-2.fill_pct", "fired", 2)]
    assert run(e, r(4, "meter.fill_pct", 99), r(5, "bin-1.other", 99)) == []


def test_reading_evaluates_only_rules_that_care_about_the_point() -> None:
    docs = [{"id": f"r{i}", "when": f"dev{i}.x", "if": "value > 0"} for i in range(200)]
    e = engine(*docs)
    run(e, r(1, "dev7.x", 1))
    assert e.evaluations == 1


def test_bad_quality_readings_do_not_evaluate() -> None:
    e = engine({"id": "hot", "when": "dev.temp", "if": "value > 30"})
    assert run(e, r(1, "dev.temp", 99, quality=1)) == []
    assert e.evaluations == 0


def test_event_trigger_by_kind_with_payload() -> None:
    e = engine(
        {
            "id": "bp",
            "when": [{"event": "blood_pressure"}],
            "if": "payload['systolic_mmhg'] >= 180",
            "notify": "always",
        }
    )
    ev = Event("blood_pressure", "kiosk-1", "info", {"systolic_mmhg": 185}, 10)
    low = Event("blood_pressure", "kiosk-1", "info", {"systolic_mmhg": 120}, 11)
    other = Event("vehicle", "kiosk-1", "info", {"systolic_mmhg": 200}, 12)
    assert run(e, ev, low, other, ev) == [("bp", "kiosk-1", "fired", 10), ("bp", "kiosk-1", "fired", 10)]


def test_for_fires_only_after_condition_held_continuously_by_reading_time() -> None:
    e = engine({"id": "full", "when": "bin.fill", "if": "value > 85", "for": "1m"})
    assert run(e, r(0, "bin.fill", 90), r(30, "bin.fill", 91)) == []
    assert run(e, r(40, "bin.fill", 50)) == []  # dropped: pending cancelled
    assert run(e, r(50, "bin.fill", 90), r(100, "bin.fill", 92)) == []
    # no new reading needed: a later record (of any point) or advance() runs the timer
    assert run(e, r(111, "other.x", 1)) == [("full", "bin.fill", "fired", 110)]
    assert e.rules["full"].states["bin.fill"].phase == "active"


def test_for_timer_fires_via_advance_without_new_readings() -> None:
    e = engine({"id": "full", "when": "bin.fill", "if": "value > 85", "for": "1m"})
    run(e, r(0, "bin.fill", 90))
    assert [(f.kind, f.ts) for f in e.advance(59)] == []
    assert [(f.kind, f.ts) for f in e.advance(1000)] == [("fired", 60)]


def test_clear_if_gives_hysteresis() -> None:
    e = engine({"id": "full", "when": "bin.fill", "if": "value >= 85", "clear_if": "value < 60"})
    assert run(e, r(1, "bin.fill", 86)) == [("full", "bin.fill", "fired", 1)]
    assert run(e, r(2, "bin.fill", 80), r(3, "bin.fill", 70), r(4, "bin.fill", 90)) == []
    assert run(e, r(5, "bin.fill", 59)) == [("full", "bin.fill", "cleared", 5)]


def test_notify_repeat_every_interval_while_active() -> None:
    e = engine({"id": "rep", "when": "d.x", "if": "value", "notify": "repeat", "every": "10m"})
    assert run(e, r(0, "d.x", True)) == [("rep", "d.x", "fired", 0)]
    assert [(f.kind, f.ts) for f in e.advance(1500)] == [("repeat", 600), ("repeat", 1200)]
    assert run(e, r(1600, "d.x", False)) == [("rep", "d.x", "cleared", 1600)]
    assert e.advance(5000) == []


def test_notify_always_fires_on_every_true_evaluation() -> None:
    e = engine({"id": "sum", "when": "m-*.p", "notify": "always"})
    assert len(run(e, r(1, "m-1.p", 1), r(2, "m-2.p", 2), r(3, "m-1.p", 3))) == 3


def test_windows_avg_min_max_count_delta_rate_by_reading_time() -> None:
    e = engine({"id": "probe", "when": "m.kwh", "if": "count('m.kwh', '1m') >= 0", "notify": "always"})
    fn = e.env
    for ts, v in [(0, 100.0), (20, 101.0), (40, 103.0), (60, 106.0), (90, 110.0)]:
        run(e, r(ts, "m.kwh", v))
    win = fn["_win"]("m.kwh", 60.0)
    # at ts=90 the 1-minute window holds samples from ts >= 30: 103, 106, 110
    assert win.count(90) == 3
    assert win.avg(90) == (103 + 106 + 110) / 3
    assert (win.min(90), win.max(90)) == (103, 110)
    assert win.delta(90) == 7
    assert abs(win.rate(90) - 7 / 50) < 1e-9
    assert win.count(1000) == 0  # evicted by time
    assert win.avg(1000) != win.avg(1000)  # NaN: empty window


def test_rate_condition_on_the_triggering_point_per_pattern_match() -> None:
    e = engine({"id": "fast", "when": "m-*.kwh", "if": "rate(point, '5m') * 3600 > 100"})
    out = run(e, r(0, "m-1.kwh", 0), r(0, "m-2.kwh", 0), r(60, "m-1.kwh", 1), r(60, "m-2.kwh", 5))
    # m-2 rose 5 kWh in 60 s = 300 kWh/h; m-1 only 60 kWh/h
    assert out == [("fast", "m-2.kwh", "fired", 60)]


def test_avg_over_window_of_another_point() -> None:
    e = engine({"id": "a", "when": "x.trigger", "if": "avg('m.p', '5m') > 5"})
    run(e, r(0, "m.p", 2), r(10, "m.p", 4))
    assert run(e, r(20, "x.trigger", 1)) == []
    run(e, r(30, "m.p", 20))
    assert run(e, r(40, "x.trigger", 1)) == [("a", "x.trigger", "fired", 40)]


def test_no_data_dead_man_fires_and_clears_when_data_returns() -> None:
    e = engine({"id": "nd", "when": [{"no_data": "meter-*.kwh", "for": "5m"}], "notify": "toggle"})
    e.watch_points(["meter-1.kwh", "meter-2.kwh", "gate.x"], 0)
    run(e, r(100, "meter-1.kwh", 1), r(250, "meter-1.kwh", 2))
    # meter-2 never reported: due at 300; meter-1 last at 250: due at 550
    assert run(e, r(400, "gate.x", 1)) == [("nd", "meter-2.kwh", "fired", 300)]
    assert [(f.key, f.ts) for f in e.advance(600)] == [("meter-1.kwh", 550)]
    assert run(e, r(700, "meter-1.kwh", 3)) == [("nd", "meter-1.kwh", "cleared", 700)]
    # it watches again after clearing
    assert [(f.key, f.kind, f.ts) for f in e.advance(1001)] == [("meter-1.kwh", "fired", 1000)]


def test_schedule_runs_in_the_site_timezone() -> None:
    e = engine(
        {"id": "night", "when": [{"schedule": "0 3 * * *"}], "if": "hour() == 3", "notify": "always"},
        tz=SHANGHAI,
        now=0,
    )
    out = e.advance(3 * 86400)
    local = [dt.datetime.fromtimestamp(f.ts, SHANGHAI) for f in out]
    assert len(out) == 3
    assert all((t.hour, t.minute) == (3, 0) for t in local)
    assert out[0].ts == 19 * 3600  # 03:00 in Shanghai is 19:00 UTC the day before


def test_hour_weekday_between_use_site_timezone() -> None:
    ts = dt.datetime(2026, 11, 30, 23, 30, tzinfo=SHANGHAI).timestamp()  # a Monday, 23:30 local
    e = engine(
        {"id": "n", "when": "d.x", "if": "between('22:00', '06:00') and hour() == 23 and weekday() == 0"},
        tz=SHANGHAI,
    )
    assert run(e, r(ts, "d.x", 1)) == [("n", "d.x", "fired", ts)]
    e2 = engine({"id": "n", "when": "d.x", "if": "between('22:00', '06:00')"})  # UTC: 15:30
    assert run(e2, r(ts, "d.x", 1)) == []


def test_evaluation_error_marks_rule_error_once_and_recovers() -> None:
    e = engine({"id": "bad", "when": "d.x", "if": "value / p('d.zero') > 1"})
    out = run(e, r(0, "d.zero", 0), r(1, "d.x", 5), r(2, "d.x", 6))
    assert out == [("bad", "d.x", "error", 1)]
    assert e.rules["bad"].summary == "error"
    assert "ZeroDivisionError" in e.rules["bad"].error
    run(e, r(3, "d.zero", 1))
    assert run(e, r(4, "d.x", 5)) == [("bad", "d.x", "fired", 4)]
    assert e.rules["bad"].summary == "active"


def test_prev_is_the_previous_value_of_the_point() -> None:
    e = engine({"id": "rise", "when": "d.x", "if": "prev < 80 and value >= 80", "notify": "always"})
    assert run(e, r(0, "d.x", 90)) == []  # first reading: prev == value
    run(e, r(1, "d.x", 10))
    assert run(e, r(2, "d.x", 85)) == [("rise", "d.x", "fired", 2)]


def test_message_template_renders_fields() -> None:
    e = engine(
        {
            "id": "full",
            "name": "满",
            "when": "bin-*.fill",
            "if": "value > 1",
            "then": [{"alert": "{rule_name}: {device} is {value:.1f}%"}],
        }
    )
    (f,) = e.process([r(0, "bin-3.fill", 91.26)])
    assert f.message == "满: bin-3 is 91.3%"


def test_disabled_rule_is_not_evaluated() -> None:
    e = engine({"id": "off", "enabled": False, "when": "d.x"})
    assert run(e, r(0, "d.x", 1)) == []
