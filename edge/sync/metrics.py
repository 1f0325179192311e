"""The sync component's Prometheus families: each push sink's backlog, deliveries, failures and
dead letters, and each pull consumer's backlog. Built from `SyncComponent.status()` at scrape time
(`edge.plugins.MetricsSource`); the sinks never touch a Prometheus object."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Metric


def families(status: dict[str, Any]) -> Iterator[Metric]:
    """The families of one sync status (`{"sinks": [...], "consumers": [...]}`)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        "backlog_rows": GaugeMetricFamily(
            "edge_sink_backlog_rows", "Rows not yet delivered", labels=["sink"]
        ),
        "backlog_bytes": GaugeMetricFamily(
            "edge_sink_backlog_bytes", "Estimated bytes not yet delivered", labels=["sink"]
        ),
        "oldest_unsent_age_s": GaugeMetricFamily(
            "edge_sink_oldest_unsent_age_seconds",
            "Age of the oldest undelivered record",
            labels=["sink"],
        ),
        "sent_rows": CounterMetricFamily("edge_sink_sent_rows", "Rows delivered", labels=["sink"]),
        "sent_batches": CounterMetricFamily("edge_sink_sent_batches", "Batches delivered", labels=["sink"]),
        "sent_bytes": CounterMetricFamily("edge_sink_sent_bytes", "Bytes sent (compressed)", labels=["sink"]),
        "failures": CounterMetricFamily("edge_sink_failures", "Failed send attempts", labels=["sink"]),
        "retries": CounterMetricFamily("edge_sink_retries", "Retries after a failure", labels=["sink"]),
        "dead_letters": GaugeMetricFamily(
            "edge_sink_dead_letters", "Records in the dead-letter table", labels=["sink"]
        ),
        "dead_letters_expired": CounterMetricFamily(
            "edge_sink_dead_letters_expired",
            "Personal and sensitive dead letters deleted at their class's retention",
            labels=["sink"],
        ),
        "withheld_privacy": CounterMetricFamily(
            "edge_sink_withheld_privacy", "Records kept on site by privacy class", labels=["sink"]
        ),
        "withheld_filter": CounterMetricFamily(
            "edge_sink_withheld_filter", "Records left out by the sink's include lists", labels=["sink"]
        ),
        "in_flight": GaugeMetricFamily(
            "edge_sink_in_flight", "Batches being sent now (at most max_in_flight)", labels=["sink"]
        ),
    }
    left_out = CounterMetricFamily(
        "edge_sink_left_out",
        "Records left out of what the sink sent: a failed read's missing value its format cannot "
        "carry, or points InfluxDB drops as beyond its retention policy",
        labels=["sink", "reason"],
    )
    shifted = CounterMetricFamily(
        "edge_sink_events_shifted",
        "Events written a unit or more after their time, not to overwrite another at the same time",
        labels=["sink"],
    )
    for s in status["sinks"]:
        for key, fam in fams.items():
            fam.add_metric([s["id"]], s.get(key) or 0)
        # what a sink's format cannot carry (InfluxDB, MQTT ThingsBoard), by reason
        for reason, n in (s.get("left_out") or {}).items():
            left_out.add_metric([s["id"], reason], n)
        if "events_shifted" in s:
            shifted.add_metric([s["id"]], s["events_shifted"])
    yield from fams.values()
    yield left_out
    yield shifted
    backlog = GaugeMetricFamily(
        "edge_consumer_backlog_rows", "Rows a pull consumer has not acked", labels=["consumer"]
    )
    oldest = GaugeMetricFamily(
        "edge_consumer_oldest_unacked_age_seconds",
        "Age of the oldest unacked record",
        labels=["consumer"],
    )
    for c in status["consumers"]:
        backlog.add_metric([c["id"]], c["backlog_rows"])
        oldest.add_metric([c["id"]], c["oldest_unsent_age_s"])
    yield backlog
    yield oldest
