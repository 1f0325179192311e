"""The operator KPIs' manifest: the `kpi:` section, the component that folds the journal into
daily figures, `GET /api/v1/kpi` (JSON and CSV) and `edge kpi show|rebuild|export`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.plugins import Plugin, lazy, lazy_value

if TYPE_CHECKING:
    from edge.config import Site
    from edge.plugins import Component, ComponentContext

#: the fold's journal cursor (edge.kpi.component registers and removes it under this name)
CURSOR = "kpi"


def check_targets(site: Site) -> list[str]:
    """`kpi.devices` entries that name no device of the site (a typo would silently keep the
    site's targets for the device meant)."""
    kpi = site.sections.get("kpi")
    known = {d.id for d in site.devices}
    return [
        f"{site.source}: kpi.devices.{dev}: no device {dev!r} in this site; known: {', '.join(sorted(known)) or 'none'}"
        for dev in sorted(getattr(kpi, "devices", {}) or {})
        if dev not in known
    ]


def component(ctx: ComponentContext) -> Component | None:
    """The KPI fold of a site with `kpi:` enabled. A site without it loads none of the fold's code
    (engine, figures, store) for as long as it runs, unless an earlier run's fold left its
    journal cursor behind: edge.kpi.component removes it."""
    cfg = ctx.site.sections.get("kpi")
    if not getattr(cfg, "enabled", False) and ctx.journal.get_cursor(CURSOR) is None:
        return None
    from edge.kpi.component import create

    return create(ctx)


PLUGIN = Plugin(
    name="kpi",
    sections={"kpi": lazy_value("edge.kpi.config:KpiConfig")},
    component=component,
    cursors={CURSOR: "the KPI fold"},
    routes=lazy("edge.kpi.api:setup"),
    openapi=lazy("edge.kpi.openapi:paths"),
    commands=lazy("edge.kpi.cli:register"),
    check=check_targets,
    order=60,
    state_schemas={"kpi": lazy_value("edge.kpi.store:MIGRATIONS")},
    restored_state={"kpi": lazy("edge.kpi.store:restored")},
)
