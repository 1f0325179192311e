"""Prometheus `/metrics` (scope read), with the standard `prometheus_client` library.

One custom collector reads the runtime's plain counters at scrape time — the hot path never
touches a Prometheus object. Each app gets its own registry (no process-global state), so several
runtimes in one test process do not collide.

Beside the runtime's families: `edge_build_info` (always 1, labelled with the version and the
hashes of `edge.buildinfo`), the web server's connections and refused logins
(`edge_login_refused_total`, by reason, wrong passwords included) and prometheus_client's
`process_*` families of this process.

Everything counted is a counter (`*_total`) and Prometheus computes rates from it; gauges are
levels only. The collector keeps no state between scrapes, so what one scraper reads never depends
on whether another scraped before it.

The core's collector names no feature: a component with metrics of its own implements
`edge.plugins.MetricsSource`, and its families are yielded beside the core's at each scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.api.account_routes import ACCOUNT_WORK_KEY
from edge.api.auth import require
from edge.plugins import MetricsSource

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Metric

    from edge.runtime import Runtime

log = logging.getLogger("edge.metrics")

#: the reasons a login is refused (`accounts.LoginRefused.reason`), each shown from 0 so that a
#: rate or an alert on one exists before its first refusal
LOGIN_REFUSAL_REASONS = ("wrong_password", "slowed", "address_limit", "in_flight")


def _families_of(source: MetricsSource) -> list[Metric]:
    """The families of one component, read whole before any is yielded: a component whose
    metrics fail is logged and left out of this scrape instead of cutting the response short."""
    try:
        return list(source.collect_metrics())
    except Exception:
        log.exception(
            "metrics of component %s cannot be read", getattr(source, "name", type(source).__name__)
        )
        return []


def _numeric(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class RuntimeCollector:
    """A prometheus_client collector (the registry needs only `collect`)."""

    def __init__(self, runtime: Runtime, connections: Any = None, app: web.Application | None = None) -> None:
        self.runtime = runtime
        self.connections = connections  # the web server's ConnectionStats, when it has one
        # the web app, whose account routes (set up after this module) count the refused logins
        self.app = app

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

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
            if buf.get("max_bytes"):
                yield GaugeMetricFamily(
                    "edge_buffer_max_bytes",
                    "The journal's byte cap (storage.max_bytes)",
                    value=buf["max_bytes"],
                )
            if buf.get("time_until_full_s") is not None:
                # only while the journal grows: absent, not infinite, when it does not
                yield GaugeMetricFamily(
                    "edge_buffer_time_until_full_seconds",
                    "Seconds until the journal reaches its byte cap at the measured net growth",
                    value=buf["time_until_full_s"],
                )
            if buf.get("free_bytes") is not None:
                yield GaugeMetricFamily(
                    "edge_buffer_free_bytes",
                    "Free bytes on the journal's filesystem",
                    value=buf["free_bytes"],
                )
            yield GaugeMetricFamily(
                "edge_buffer_disk_full",
                "1 while the journal cannot write for want of disk space (its reserve reached)",
                value=1 if buf.get("disk_full") else 0,
            )
            yield CounterMetricFamily(
                "edge_retention_expired",
                "Personal or sensitive records deleted at their class's retention before delivery",
                value=buf.get("retention_expired") or 0,
            )
            yield CounterMetricFamily(
                "edge_snapshots_expired",
                "Snapshot files deleted at their class's retention",
                value=buf.get("snapshots_expired") or 0,
            )
            yield CounterMetricFamily(
                "edge_ints_as_floats",
                "Integers beyond the journal's 64 bits journaled as the nearest float",
                value=buf.get("ints_as_floats") or 0,
            )
            yield GaugeMetricFamily(
                "edge_retention_paused",
                "1 while deletion by age waits for a trusted clock after a forward jump",
                value=1 if buf.get("retention_paused") else 0,
            )
            # a damaged journal page fails every step: records past their retention are kept
            yield CounterMetricFamily(
                "edge_retention_failures",
                "Retention steps that failed since the start (records past their retention are kept)",
                value=buf.get("retention_failures") or 0,
            )
            yield GaugeMetricFamily(
                "edge_retention_failing",
                "1 while the journal's retention steps fail (the last one failed)",
                value=1 if buf.get("retention_failing") else 0,
            )
        info = InfoMetricFamily(
            "edge_build",
            "The version and the configuration hashes in force (edge.buildinfo)",
            value=rt.build_info(),
        )
        yield info
        yield GaugeMetricFamily(
            "edge_clock_trusted",
            "1 while the wall clock is trusted (kernel synchronised, or trusted by the site)",
            value=1 if rt.clock_trust.trusted else 0,
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
        yield drops  # the hub's, the buffer's and the drivers' (filled above)
        # drivers that count what they saw (advertisements, duplicates, garbage, replays...)
        counted = CounterMetricFamily(
            "edge_driver_count", "A driver's own counters since its start", labels=["device", "counter"]
        )
        for device_id, slot in rt.slots.items():
            for name, value in _numeric(getattr(slot.driver, "counters", None) or {}).items():
                counted.add_metric([device_id, name], value)
        for component_name, component in rt.components.items():  # share the drivers' family
            counters = getattr(component, "counters", None)
            if isinstance(counters, dict):
                for name, value in _numeric(counters).items():
                    counted.add_metric([component_name, name], value)
        yield counted

        for component in rt.components.values():
            if isinstance(component, MetricsSource):
                yield from _families_of(component)

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
        yield from self._refused_logins()

    def _refused_logins(self) -> Iterator[Any]:
        """`edge_login_refused_total` by reason, read at the scrape from the account routes'
        counts (`RefusedLogins.by_reason`); absent from an app without them."""
        from prometheus_client.core import CounterMetricFamily

        work = None if self.app is None else self.app.get(ACCOUNT_WORK_KEY)
        if work is None:
            return
        counts = dict.fromkeys(LOGIN_REFUSAL_REASONS, 0) | dict(work.refused.by_reason)
        logins = CounterMetricFamily("edge_login_refused", "Logins refused, by reason", labels=["reason"])
        for reason, count in sorted(counts.items()):
            logins.add_metric([reason], count)
        yield logins


class Scrapes:
    """The app's own registry, made at its first scrape: prometheus_client (about 1 MB) is
    imported only on a gateway someone scrapes."""

    def __init__(self, runtime: Runtime, connections: Any, app: web.Application | None = None) -> None:
        self.runtime = runtime
        self.connections = connections
        self.app = app
        self._registry: CollectorRegistry | None = None

    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from prometheus_client import CollectorRegistry, ProcessCollector

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(RuntimeCollector(self.runtime, self.connections, self.app))  # type: ignore[arg-type]
            # process_* (resident memory, CPU seconds, open fds, start time), read from /proc at
            # each scrape; on a system without /proc it yields nothing
            ProcessCollector(registry=self._registry)
        return self._registry


SCRAPES_KEY: web.AppKey[Scrapes] = web.AppKey("metrics.scrapes", Scrapes)


async def metrics(request: web.Request) -> web.Response:
    require(request, "read")
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    body = generate_latest(request.app[SCRAPES_KEY].registry())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application, runtime: Runtime) -> None:
    from edge.api.keys import CONNECTIONS_KEY

    app[SCRAPES_KEY] = Scrapes(runtime, app.get(CONNECTIONS_KEY), app)
    app.router.add_get("/metrics", metrics)
