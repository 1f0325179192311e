"""The upstream sync manifest: the `http` and `influxdb` push sinks, the sync component (which
also keeps the pull consumers' cursors), its HTTP routes (`GET /api/v1/sync`, the dead letters)
with their OpenAPI paths, `edge sync status`, and the dead letters naming a resident for its
export."""

from __future__ import annotations

from edge.plugins import Plugin, Spec, lazy, lazy_value

PLUGIN = Plugin(
    name="sync",
    sinks={
        "http": Spec(
            lazy_value("edge.sync.http_sink:HttpSinkConfig"), lazy_value("edge.sync.http_sink:HttpSink")
        ),
        "influxdb": Spec(
            lazy_value("edge.sync.influx_sink:InfluxSinkConfig"),
            lazy_value("edge.sync.influx_sink:InfluxSink"),
        ),
    },
    component=lazy("edge.sync.component:create"),
    routes=lazy("edge.sync.api:setup"),
    openapi=lazy("edge.sync.openapi:paths"),
    commands=lazy("edge.sync.cli:register"),
    subject_records=lazy("edge.sync.deadletters:of_subject"),
    order=20,
    state_schemas={"sync": lazy_value("edge.sync.deadletters:MIGRATIONS")},
)
