"""Evaluation budgets: no expression or message template, whatever the values it meets, takes more
than a bounded time and memory; the known blow-ups raise `LimitExceeded` instead of building
gigabytes; a rule over its time budget goes to `error`, is suspended, and the others keep going."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from edge.model import Event, Reading
from rules.engine import Engine
from rules.expr import (
    ARGS,
    FUNCTIONS,
    METHODS,
    WINDOW_FUNCTIONS,
    ExprError,
    compile_expr,
)
from rules.guards import MAX_INT_BITS, LimitExceeded
from rules.model import parse_rule
from rules.templates import render_template
from tests.rules.helpers import engine, r

TS = 1.75e9
ENV = Engine().env
BIG_TEXT = "ab 12 %d " * 3_000  # an event payload or a text reading of 27 kB: past every size limit
DIGITS = "9" * 4000


def context(value: Any = None, prev: Any = None, payload: Any = None) -> tuple[Any, ...]:
    return (value, prev, "d.p", "d", "p", TS, "good", None, None, None, payload)


def evaluate(src: str, ctx: tuple[Any, ...]) -> Any:
    return compile_expr(src).bind(ENV)(ctx)


# (expression, context, the limit it must hit)
BLOW_UPS = [
    ("(((int(ts)**64)**64)**64)**8 > 0", context(), "integer size"),
    ("str(value)*int(value*1000000)", context(12.5), "sequence size"),
    ("str(payload['x']) % 1", context(payload={"x": "%0999999999d"}), "string formatting"),
    ("round(int(value), -10**6)", context(7), "integer size"),
    ("sum(payload['items'], ())", context(payload={"items": [(1,)] * 50_000}), "sum start"),
    ("((value ** 64) ** 64) ** 64", context(3), "integer size"),
    ("int(payload['n'])", context(payload={"n": DIGITS}), "integer size"),
    ("value * value * value", context(2**3000), "integer size"),
    ("payload['s'] + payload['s']", context(payload={"s": "x" * 6000}), "sequence size"),
    ("((payload['s'],) * 100)", context(payload={"s": "x" * 1000}), "sequence size"),
    ("str(payload)", context(payload={"s": BIG_TEXT}), "sequence size"),
    ("str(value.split())", context(BIG_TEXT), "sequence size"),
    ("value * 2", context("x" * 6000), "sequence size"),
    ("value.split() * 2000", context("a b c d e f"), "sequence size"),
]


@pytest.mark.parametrize(("src", "ctx", "limit"), BLOW_UPS)
def test_known_blow_ups_raise_the_budget_error(src: str, ctx: tuple[Any, ...], limit: str) -> None:
    start = time.thread_time()
    with pytest.raises(LimitExceeded) as err:
        evaluate(src, ctx)
    assert err.value.limit == limit, str(err.value)
    assert time.thread_time() - start < 1.0  # refused before the work, not after it


def test_operations_that_cannot_grow_stay_native_and_cost_nothing() -> None:
    # no guarded call, no timing: compiled-lambda speed
    for src in (
        "value > 60 and prev < 60 and device.startswith('bin')",
        "value * 2.5 - prev / 3",
        "value + 1",
    ):
        assert compile_expr(src).cost == 0, src
    for src in (
        "value * 2",
        "value + prev",
        "value % 2",
        "value ** 2",
        "str(value)",
        "payload['s'].count('a')",
    ):
        assert compile_expr(src).cost > 0, src
    # ordinary values still compute as before
    assert (
        evaluate("value * 2 + prev ** 2 - int('12') + round(value, -1)", context(14, 3)) == 28 + 9 - 12 + 10
    )
    assert evaluate("str(value) + 'x' * 3 + device", context(1.5)) == "1.5xxxd"
    assert evaluate("sum((value, prev), 0.5)", context(1, 2)) == 3.5
    big = 2**2000
    assert evaluate("value % 7 + len(str(value * value))", context(big)) == big % 7 + len(str(big * big))


def test_template_render_over_its_size_limit_raises() -> None:
    fields = {"payload": {"s": "x" * 100}, "value": 2**5000, "device": "d"}
    with pytest.raises(LimitExceeded) as err:
        render_template("{payload}" * 200, fields)
    assert err.value.limit == "message size" and "10000" in str(err.value)
    with pytest.raises(LimitExceeded, match=f"{MAX_INT_BITS}"):
        render_template("{value}", fields)
    assert render_template("{device}: {payload[s]:.3}", fields) == "d: xxx"


# ---------------------------------------------------------------- fuzz: the whole grammar
PLAIN_FUNCTIONS = sorted(f for f in FUNCTIONS if f not in WINDOW_FUNCTIONS or f in ("min", "max", "sum"))
CALLABLE = [f for f in PLAIN_FUNCTIONS if f not in ("age", "p", "between", "hour", "minute", "weekday")]
LEAVES = st.one_of(
    st.sampled_from([*ARGS, "None", "True", "''", "()", "hour()", "p('d.p')", "age('d.p')"]),
    st.sampled_from(
        ["'%0999d'", "'ab'*4000", "'x'", "'9'*1200", str(2**4000), "10**60", "-7", "2.5", "1e300"]
    ),
    st.integers(-(10**9), 10**9).map(str),
    # counts and sizes that turn a repetition or a power into gigabytes
    st.sampled_from(["1000", "300", "64", "int(ts)", "len(payload['s'])", "-10**6", "10**9"]),
    st.sampled_from(["payload['s']", "payload['n']", "payload.get('s', '')", "payload['items']"]),
)


def _call(fn: str, args: list[str]) -> str:
    lo, hi = FUNCTIONS[fn]
    return f"{fn}({', '.join(args[: max(lo, min(hi, len(args)))])})"


GROWTH = st.sampled_from(
    ["int(ts)", "len(payload['s'])", "int(value)", "1000", "payload['s']", "str(value)", "(value, prev)"]
)
GRAMMAR = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.tuples(
            inner,
            st.sampled_from(
                ["+", "-", "*", "/", "//", "%", " and ", " or ", " < ", " == ", " in ", " not in "]
            ),
            inner,
        ).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
        st.tuples(inner, st.sampled_from(["** 2", "** 64", "** -3", "** 0.5"])).map(
            lambda t: f"({t[0]}){t[1]}"
        ),
        # growth: an operand times, plus or formatted with a large computed one (the old blow-ups)
        st.tuples(inner, st.sampled_from(["*", "+", "%"]), GROWTH).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(CALLABLE), st.lists(inner, min_size=1, max_size=3)).map(
            lambda t: _call(t[0], t[1])
        ),
        st.tuples(inner, st.sampled_from(sorted(METHODS)), st.lists(inner, max_size=2)).map(
            lambda t: f"({t[0]}).{t[1]}({', '.join(t[2])})"
        ),
        st.lists(inner, min_size=1, max_size=4).map(lambda xs: f"({', '.join(xs)},)"),
        st.tuples(inner, st.sampled_from(["[0]", "[-1]", "['s']"])).map(lambda t: f"({t[0]}){t[1]}"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        inner.map(lambda s: f"(not {s})"),
        inner.map(lambda s: f"(-{s})"),
    ),
    max_leaves=30,
)
PAYLOAD = {"s": BIG_TEXT, "n": DIGITS, "items": ["a" * 50] * 150}
CONTEXTS = [
    context(7, 3, PAYLOAD),
    context(2.5e300, -1.5, PAYLOAD),
    context(2**4000 - 1, 2**2000, {}),
    context("open", "closed", {"s": "x"}),
    context(BIG_TEXT, "%0999999999d", PAYLOAD),
]
EVAL_CPU_S = 0.05
EVAL_PEAK_BYTES = 20 * 2**20


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(src=GRAMMAR)
def test_any_expression_on_any_value_stays_within_time_and_memory(src: str) -> None:
    try:
        fn = compile_expr(src).bind(ENV)
    except ExprError:
        return
    worst_cpu, worst_peak = 0.0, 0
    for ctx in CONTEXTS:
        # CPU time of this thread: what the expression costs, not what other processes took
        start = time.thread_time()
        with contextlib.suppress(Exception):  # an error is an allowed outcome; only its cost is judged
            fn(ctx)
        spent = time.thread_time() - start
        assert spent < EVAL_CPU_S, f"{src!r} on {type(ctx[0]).__name__} took {spent * 1000:.0f} ms"
        tracemalloc.start()
        with contextlib.suppress(Exception):
            fn(ctx)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < EVAL_PEAK_BYTES, f"{src!r} on {type(ctx[0]).__name__} peaked at {peak >> 20} MiB"
        worst_cpu, worst_peak = max(worst_cpu, spent), max(worst_peak, peak)
    # steer the search towards the costliest expressions
    target(worst_cpu, label="CPU seconds")
    target(float(worst_peak), label="peak bytes")


# ---------------------------------------------------------------- the engine's time budget
SLOW = "payload['s'].count('ab x') + payload['s'].count('zz') + payload['s'].find('q') >= -1"


def test_rule_over_its_time_budget_twice_in_a_row_goes_to_error_and_is_suspended() -> None:
    e = Engine()
    e.eval_budget = 0.0005  # so a scan of a 10 MB payload is surely over it, on any machine
    e.add(_rule("slow", SLOW))
    e.add(_rule("cheap", "int(payload.get('n', 0)) >= 0"))
    huge = {"s": "ab 12 " * 2_000_000, "n": 1}

    first = e.process([Event("ping", "x", "info", huge, TS)])
    assert [(f.rule.id, f.kind) for f in first] == [("slow", "fired"), ("cheap", "fired")]
    assert not e.suspended  # one slow evaluation is a strike, not a verdict
    second = e.process([Event("ping", "x", "info", huge, TS + 1)])
    errors = [f for f in second if f.kind == "error"]
    assert [f.rule.id for f in errors] == ["slow"]
    assert "the rule is suspended" in errors[0].error and "limit of 0.5 ms" in errors[0].error
    assert e.rules["slow"].summary == "error" and "slow" in e.suspended
    assert e.rules["cheap"].summary == "active"

    # suspended: not evaluated again, whatever arrives
    before = e.evaluations
    assert e.process([Event("ping", "x", "info", huge, TS + 2)]) == []
    assert e.evaluations == before + 1  # the cheap rule only
    # saved again: evaluated again
    e.add(_rule("slow", "payload.get('n') == 1"))
    assert [f.rule.id for f in e.process([Event("ping", "x", "info", huge, TS + 3)])] == ["slow"]


def test_a_suspended_rule_saved_again_gets_its_timers_back() -> None:
    e = Engine()
    e.eval_budget = 0.0  # every timed evaluation is over it
    doc = {"id": "tick", "when": [{"schedule": "* * * * *"}], "if": "len(str(ts)) > 0", "notify": "always"}
    e.add(parse_rule(doc), TS)
    assert [f.kind for f in e.advance(TS + 60)] == ["fired"]  # one strike
    assert [f.kind for f in e.advance(TS + 120)] == ["error"] and "tick" in e.suspended
    assert e.advance(TS + 600) == []  # its schedule timers pass unevaluated
    e.eval_budget = 10.0
    e.replace(parse_rule({**doc, "name": "renamed"}))  # same logic: states kept, suspension lifted
    assert "tick" not in e.suspended
    assert [f.kind for f in e.advance(TS + 650)] == ["fired"]  # TS + 620: the next minute


def test_a_slow_evaluation_that_ends_in_an_error_counts_against_the_time_budget() -> None:
    e = Engine()
    e.eval_budget = 0.0005
    # scans the payload, then fails on a size limit: every record would cost the scan again
    e.add(_rule("scan-then-fail", f"{SLOW} and len(str(value) * int(value)) > 0"))
    huge = {"s": "ab 12 " * 2_000_000, "value": 10**9}
    errors = []
    for i in range(2):
        errors += [
            f.error for f in e.process([Event("ping", "x", "info", huge, TS + i)]) if f.kind == "error"
        ]
    assert "sequence" not in e.rules["scan-then-fail"].error and "the rule is suspended" in errors[-1]
    assert "scan-then-fail" in e.suspended


def test_a_size_limit_error_reports_once_and_the_rule_recovers() -> None:
    e = engine({"id": "rep", "when": "d.*", "if": "len(str(value) * int(value)) > 5"})
    firings = [(f.rule.id, f.kind) for f in e.process([r(TS, "d.a", 10**9), r(TS + 1, "d.b", 10**9)])]
    assert firings == [("rep", "error")]
    assert "10000" in e.rules["rep"].error and not e.suspended
    assert [(f.kind) for f in e.process([r(TS + 2, "d.a", 9)])] == ["fired"]
    assert e.rules["rep"].error == ""


def _rule(rule_id: str, cond: str) -> Any:
    return parse_rule({"id": rule_id, "when": [{"event": "ping"}], "if": cond, "notify": "toggle"})


def test_reading_rule_errors_leave_the_hot_path_without_a_second_evaluation() -> None:
    calls = []
    e = engine({"id": "x", "when": "d.p", "if": "str(value) * int(value) != ''"})
    rr = e.rules["x"]
    inner = rr.cond
    assert inner is not None

    def counted(args: Any) -> Any:
        calls.append(args)
        return inner(args)

    rr.cond = counted  # before the first record: the point's route takes it
    out = e.process([Reading(TS, "d.p", 10**9)])
    assert [f.kind for f in out] == ["error"] and len(calls) == 1
