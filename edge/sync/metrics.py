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
            "edge_sink_backlog_rows",
            "Rows the journal still holds that the sink has not delivered",
            labels=["sink"],
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
    commands = _command_families()
    for s in status["sinks"]:
        for key, fam in fams.items():
            fam.add_metric([s["id"]], s.get(key) or 0)
        # what a sink's format cannot carry (InfluxDB, MQTT ThingsBoard), by reason
        for reason, n in (s.get("left_out") or {}).items():
            left_out.add_metric([s["id"], reason], n)
        if "events_shifted" in s:
            shifted.add_metric([s["id"]], s["events_shifted"])
        if "commands_received" in s:  # a sink that takes commands (MQTT `commands: true`)
            _add_commands(commands, s)
    # a sink removed or renamed in the site file keeps its dead letters until they are deleted or
    # expire: they are still counted, under the id they were stored with
    for removed in status.get("removed_sinks") or ():
        fams["dead_letters"].add_metric([removed["id"]], removed["dead_letters"])
    yield from fams.values()
    yield left_out
    yield shifted
    yield from commands.values()
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


def _command_families() -> dict[str, Any]:
    """The families of the commands a sink takes (MQTT `commands: true`): every request is counted
    once, as refused by class, done by outcome, an error of the gateway's own, a retained message
    never run, or answered again from its stored answer; answers that could not be published wait
    for the next connection or are dropped."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    return {
        "received": CounterMetricFamily(
            "edge_sink_commands_received", "Command requests received", labels=["sink"]
        ),
        "refused": CounterMetricFamily(
            "edge_sink_commands_refused",
            "Command requests refused before any device, by class (malformed, expired, replayed, ...)",
            labels=["sink", "reason"],
        ),
        "done": CounterMetricFamily(
            "edge_sink_commands_done", "Command requests run, by outcome", labels=["sink", "outcome"]
        ),
        "errors": CounterMetricFamily(
            "edge_sink_commands_errors", "Command requests failed by an error of the gateway", labels=["sink"]
        ),
        "retained": CounterMetricFamily(
            "edge_sink_commands_retained", "Retained command messages skipped, never run", labels=["sink"]
        ),
        "answered_again": CounterMetricFamily(
            "edge_sink_commands_answered_again",
            "Requests sent again, given their stored answer without a second write",
            labels=["sink"],
        ),
        "answers_dropped": CounterMetricFamily(
            "edge_sink_command_answers_dropped",
            "Command answers never published (the waiting list was full, or the client refused one)",
            labels=["sink"],
        ),
        "answers_unsent": GaugeMetricFamily(
            "edge_sink_command_answers_unsent",
            "Command answers waiting for the next connection",
            labels=["sink"],
        ),
    }


def _add_commands(fams: dict[str, Any], s: dict[str, Any]) -> None:
    sink = s["id"]
    fams["received"].add_metric([sink], s.get("commands_received") or 0)
    for reason, n in (s.get("commands_refused") or {}).items():
        fams["refused"].add_metric([sink, reason], n)
    for outcome, n in (s.get("commands_done") or {}).items():
        fams["done"].add_metric([sink, outcome], n)
    for key in ("errors", "retained", "answered_again"):
        fams[key].add_metric([sink], s.get(f"commands_{key}") or 0)
    for key in ("answers_dropped", "answers_unsent"):
        fams[key].add_metric([sink], s.get(key) or 0)
