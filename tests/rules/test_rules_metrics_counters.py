"""The rules engine's running counts are exported once, as counters (for increase()/rate()); a
gauge of the same count is kept only where a doc still points operators to it."""

from __future__ import annotations

from rules.metrics import families


def test_skipped_schedules_are_a_counter_and_no_longer_a_gauge() -> None:
    status = {"rules": 2, "firings": 5, "schedules_skipped": 3, "window_backfill_truncated": 1}
    exported = {
        (family.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families(lambda: status)
        for sample in family.samples
    }
    assert exported[("edge_rules_count", (("counter", "schedules_skipped"),))] == 3
    assert ("edge_rules_status", (("field", "schedules_skipped"),)) not in exported
    # docs/rules.md still points to this one's gauge
    assert exported[("edge_rules_status", (("field", "window_backfill_truncated"),))] == 1
    assert exported[("edge_rules_status", (("field", "rules"),))] == 2
