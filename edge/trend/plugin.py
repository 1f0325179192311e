"""The trend index's manifest: its component keeps trend.db rolled up behind the journal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin

if TYPE_CHECKING:
    from edge.plugins import ComponentContext


def component(ctx: ComponentContext) -> Any:
    from edge.store.trend import create

    # trend's create reads only site.storage, journal and clock, which the context carries
    return create(ctx)  # type: ignore[arg-type]


PLUGIN = Plugin(name="trend", component=component, order=40)
