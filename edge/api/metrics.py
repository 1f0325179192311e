"""Prometheus `/metrics` (scope read), with the standard `prometheus_client` library.

One custom collector reads the runtime's plain counters at scrape time — the hot path never
touches a Prometheus object. Each app gets its own registry (no process-global state), so several
runtimes in one test process do not collide.

Everything counted is a counter (`*_total`) and Prometheus computes rates from it; gauges are
levels only. The collector keeps no state between scrapes, so what one scraper reads never depends
on whether another scraped before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.api.auth import require

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from edge.runtime import Runtime

RULE_EVAL_KEYS = ("evaluations", "evaluated", "evals", "rule_evaluations")
# Fields of the rules engine's status that only ever grow: counters, for rate(). The evaluations
# have their own family, edge_rule_evaluations_total.
RULE_COUNTERS = (
    "firings",
    "actions_executed",
    "actions_failed",
    "rate_limited",
    "state_write_errors",
    "windows_refilled",
    "window_backfill_truncated",
)
# Still in edge_rules_status as well, where docs/rules.md tells operators to look.
RULE_COUNTERS_ALSO_STATUS = ("window_backfill_truncated",)


def _numeric(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class RuntimeCollector:
    """A prometheus_client collector (the registry needs only `collect`)."""

    def __init__(self, runtime: Runtime, connections: Any = None) -> None:
        self.runtime = runtime
        self.connections = connections  # the web server's ConnectionStats, when it has one

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        rt = self.runtime
        hub, journal = rt.hub, rt.journal
        yield CounterMetricFamily(
            "edge_readings_received", "Samples received from drivers", value=hub.received
        )
        yield CounterMetricFamily(
            "edge_readings_journaled", "Samples that passed change detection", value=hub.journaled
        )
        yield CounterMetricFamily("edge_events", "Events published", value=hub.events)
        yield GaugeMetricFamily(
            "edge_journal_committed_seq", "Highest committed seq", value=journal.committed_seq
        )
        yield CounterMetricFamily(
            "edge_journal_rows_committed", "Rows committed since start", value=journal.committed_rows
        )
        yield CounterMetricFamily(
            "edge_journal_write_errors", "Failed journal commits", value=journal.write_errors
        )

        drops = CounterMetricFamily(
            "edge_dropped", "Records dropped, by where and why", labels=["where", "reason"]
        )
        drops.add_metric(["hub", "subscriber_error"], hub.subscriber_errors)
        try:
            from edge.store.health import buffer_health

            buf = buffer_health(journal, rt.site.storage)
        except Exception:
            buf = {}
        for key, value in _numeric(buf).items():
            if "drop" in key:
                drops.add_metric(["buffer", key], value)
        if buf:
            # The journal's own one-minute window, as `edge buffer stats` shows it: the same for
            # every scraper. Graphs should use rate(edge_readings_received_total[...]).
            yield GaugeMetricFamily(
                "edge_ingest_rate",
                "Records committed to the journal per second over the last minute",
                value=buf.get("ingest_rate") or 0,
            )
            yield GaugeMetricFamily("edge_buffer_rows", "Rows in the journal", value=buf.get("rows") or 0)
            yield GaugeMetricFamily(
                "edge_buffer_bytes", "Bytes used by the journal", value=buf.get("bytes") or 0
            )

        errors = CounterMetricFamily("edge_driver_errors", "Driver errors since start", labels=["device"])
        restarts = CounterMetricFamily(
            "edge_driver_restarts", "Driver restarts since start", labels=["device"]
        )
        up = GaugeMetricFamily(
            "edge_device_state", "1 for the current health state", labels=["device", "state"]
        )
        for d in rt.devices_status():
            errors.add_metric([d["id"]], d["health"].get("errors", 0))
            restarts.add_metric([d["id"]], d["restarts"])
            up.add_metric([d["id"], d["health"]["state"]], 1)
            if d.get("dropped"):
                drops.add_metric([f"driver:{d['id']}", "dropped"], d["dropped"])
        yield errors
        yield restarts
        yield up
        # drivers that count what they saw (BLE: advertisements, duplicates, garbage, replays...)
        counted = CounterMetricFamily(
            "edge_driver_count", "A driver's own counters since its start", labels=["device", "counter"]
        )
        for device_id, slot in rt.slots.items():
            for name, value in _numeric(getattr(slot.driver, "counters", None) or {}).items():
                counted.add_metric([device_id, name], value)
        for component_name, component in rt.components.items():  # e.g. the Modbus server's
            counters = getattr(component, "counters", None)
            if isinstance(counters, dict):
                for name, value in _numeric(counters).items():
                    counted.add_metric([component_name, name], value)
        yield counted

        sync = rt.components.get("sync")
        if sync is not None:
            st = sync.status()
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
                "sent_batches": CounterMetricFamily(
                    "edge_sink_sent_batches", "Batches delivered", labels=["sink"]
                ),
                "sent_bytes": CounterMetricFamily(
                    "edge_sink_sent_bytes", "Bytes sent (compressed)", labels=["sink"]
                ),
                "failures": CounterMetricFamily(
                    "edge_sink_failures", "Failed send attempts", labels=["sink"]
                ),
                "retries": CounterMetricFamily(
                    "edge_sink_retries", "Retries after a failure", labels=["sink"]
                ),
                "dead_letters": GaugeMetricFamily(
                    "edge_sink_dead_letters", "Records in the dead-letter table", labels=["sink"]
                ),
                "withheld_privacy": CounterMetricFamily(
                    "edge_sink_withheld_privacy", "Records kept on site by privacy class", labels=["sink"]
                ),
                "in_flight": GaugeMetricFamily(
                    "edge_sink_in_flight", "Batches being sent now (at most max_in_flight)", labels=["sink"]
                ),
            }
            for s in st["sinks"]:
                for key, fam in fams.items():
                    fam.add_metric([s["id"]], s.get(key) or 0)
            yield from fams.values()
            cb = GaugeMetricFamily(
                "edge_consumer_backlog_rows", "Rows a pull consumer has not acked", labels=["consumer"]
            )
            ca = GaugeMetricFamily(
                "edge_consumer_oldest_unacked_age_seconds",
                "Age of the oldest unacked record",
                labels=["consumer"],
            )
            for c in st["consumers"]:
                cb.add_metric([c["id"]], c["backlog_rows"])
                ca.add_metric([c["id"]], c["oldest_unsent_age_s"])
            yield cb
            yield ca

        rules = rt.components.get("rules")
        if rules is not None:
            try:
                rst = _numeric(rules.status())
            except Exception:
                rst = {}
            evals = next((rst[k] for k in RULE_EVAL_KEYS if k in rst), None)
            if evals is not None:
                yield CounterMetricFamily(
                    "edge_rule_evaluations", "Rule evaluations since start", value=evals
                )
            counted_rules = CounterMetricFamily(
                "edge_rules_count", "The rules engine's counters since start", labels=["counter"]
            )
            g = GaugeMetricFamily(
                "edge_rules_status", "Numeric fields of the rules engine status", labels=["field"]
            )
            for k, v in rst.items():
                if k in RULE_EVAL_KEYS:
                    continue
                if k in RULE_COUNTERS:
                    counted_rules.add_metric([k], v)
                if k not in RULE_COUNTERS or k in RULE_COUNTERS_ALSO_STATUS:
                    g.add_metric([k], v)
            yield counted_rules
            yield g

        conns = self.connections
        if conns is not None:
            yield GaugeMetricFamily(
                "edge_web_connections_open", "Open connections to the web server", value=conns.open
            )
            caps = GaugeMetricFamily(
                "edge_web_connections_cap",
                "Connections held at most, per client address and in total",
                labels=["scope"],
            )
            caps.add_metric(["per_client"], conns.per_client)
            caps.add_metric(["total"], conns.total)
            yield caps
            refused = CounterMetricFamily(
                "edge_web_connections_refused",
                "Connections closed at once: over the per-client or total cap, evicted to admit a new "
                "one at the total cap, or accept() failing",
                labels=["reason"],
            )
            refused.add_metric(["per_client_cap"], conns.refused_per_client)
            refused.add_metric(["total_cap"], conns.refused_total)
            refused.add_metric(["evicted_idle"], conns.evicted)
            refused.add_metric(["accept_error"], conns.accept_errors)
            yield refused


class Scrapes:
    """The app's own registry, made at its first scrape: prometheus_client (about 1 MB) is
    imported only on a gateway someone scrapes."""

    def __init__(self, runtime: Runtime, connections: Any) -> None:
        self.runtime = runtime
        self.connections = connections
        self._registry: CollectorRegistry | None = None

    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(RuntimeCollector(self.runtime, self.connections))  # type: ignore[arg-type]
        return self._registry


SCRAPES_KEY: web.AppKey[Scrapes] = web.AppKey("metrics.scrapes", Scrapes)


async def metrics(request: web.Request) -> web.Response:
    require(request, "read")
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    body = generate_latest(request.app[SCRAPES_KEY].registry())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application, runtime: Runtime) -> None:
    from edge.api.keys import CONNECTIONS_KEY

    app[SCRAPES_KEY] = Scrapes(runtime, app.get(CONNECTIONS_KEY))
    app.router.add_get("/metrics", metrics)
