"""The trend index's manifest: its component keeps trend.db rolled up behind the journal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin

if TYPE_CHECKING:
    from edge.runtime import Runtime


def component(runtime: Runtime) -> Any:
    from edge.store.trend import create

    return create(runtime)


PLUGIN = Plugin(name="trend", component=component, order=40)
