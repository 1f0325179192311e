"""The rules engine's Prometheus families, built from `RulesComponent.status()` at scrape time
(`edge.plugins.MetricsSource`): the evaluations, the counters that only ever grow (for rate()) and
the engine's levels."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Metric

RULE_EVAL_KEYS = ("evaluations", "evaluated", "evals", "rule_evaluations")
# Fields of the rules engine's status that only ever grow: counters, for rate(). The evaluations
# have their own family, edge_rule_evaluations_total.
RULE_COUNTERS = (
    "firings",
    "schedules_skipped",
    "timers_moved",
    "actions_executed",
    "actions_failed",
    "actions_cancelled",
    "rate_limited",
    "state_write_errors",
    "windows_refilled",
    "window_backfill_truncated",
    "loop_share_suspensions",
    "window_budget_refusals",
)
# Still in edge_rules_status as well, where docs/rules.md (window_backfill_truncated) tells
# operators to look.
RULE_COUNTERS_ALSO_STATUS = ("window_backfill_truncated",)


def _numeric(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def families(status: Callable[[], dict[str, Any]]) -> Iterator[Metric]:
    """The families of the engine whose status `status()` reads; a status that fails to read
    leaves the counters empty rather than failing the whole scrape."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    try:
        rst = _numeric(status())
    except Exception:
        rst = {}
    evals = next((rst[k] for k in RULE_EVAL_KEYS if k in rst), None)
    if evals is not None:
        yield CounterMetricFamily("edge_rule_evaluations", "Rule evaluations since start", value=evals)
    counted = CounterMetricFamily(
        "edge_rules_count", "The rules engine's counters since start", labels=["counter"]
    )
    levels = GaugeMetricFamily(
        "edge_rules_status", "Numeric fields of the rules engine status", labels=["field"]
    )
    for k, v in rst.items():
        if k in RULE_EVAL_KEYS:
            continue
        if k in RULE_COUNTERS:
            counted.add_metric([k], v)
        if k not in RULE_COUNTERS or k in RULE_COUNTERS_ALSO_STATUS:
            levels.add_metric([k], v)
    yield counted
    yield levels
