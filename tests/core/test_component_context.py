"""A component is built from the runtime's narrow `ComponentContext`, never the Runtime: it sees
the site, journal, hub, state, clock and task helper, finds the components built before it by type
and the devices by capability, and cannot reach driver slots."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge import plugins
from edge.driver import Snapshots
from edge.plugins import ComponentContext, Plugin
from edge.runtime import Runtime
from edge.sync.component import SyncComponent
from rules.component import RulesComponent
from tests.support.site import running_site


class Probe:
    """A component that keeps the context it was built from and a task it had the runtime own."""

    name = "probe"

    def __init__(self, ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        self.task = self.ctx.spawn(asyncio.Event().wait(), "probe:idle")

    async def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {}


built: list[Any] = []


def probe(ctx: Any) -> Probe:
    built.append(ctx)
    return Probe(ctx)


@pytest.fixture
def with_probe() -> Iterator[None]:
    built.clear()
    # after rules (10) and sync (20): those are built before the probe
    plugins.use([*plugins.discover(), Plugin(name="probe", component=probe, order=25)])
    yield
    plugins.use(None)


SITE = {
    "devices": [
        {"id": "bin-1", "driver": "sim", "points": [{"name": "fill_pct", "signal": "constant", "value": 4}]}
    ],
    "consumers": [{"id": "city", "token_env": "EDGE_TEST_UNUSED"}],
    "rules": {"enabled": True},
}


async def test_a_component_gets_the_narrow_context(tmp_path: Path, with_probe: None) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        [ctx] = built
        assert isinstance(ctx, ComponentContext) and not isinstance(ctx, Runtime)
        assert not hasattr(ctx, "slots") and not hasattr(ctx, "components")
        assert (ctx.site, ctx.journal, ctx.hub, ctx.state) == (rt.site, rt.journal, rt.hub, rt.state)
        assert ctx.clock is rt.clock

        # the components built before it, by type, and none of a type the site does not run
        assert ctx.component(SyncComponent) is rt.components["sync"]
        assert ctx.component(RulesComponent) is rt.components["rules"]
        assert ctx.component(Probe) is rt.components["probe"]
        assert rt.component(SyncComponent) is rt.components["sync"]
        assert rt.component(dict) is None

        with pytest.raises(LookupError, match="'bin-1' is a sim device, which has no Snapshots"):
            ctx.driver_with("bin-1", Snapshots)

        mine = rt.component(Probe)
        assert mine is not None and mine.task is not None and not mine.task.done()
        task = mine.task
    # the task the context spawned belongs to the runtime: stopped with it
    assert task.cancelled()


async def test_without_upstream_the_sync_component_is_not_found(tmp_path: Path, with_probe: None) -> None:
    doc = {k: v for k, v in SITE.items() if k != "consumers"}
    async with running_site(tmp_path, doc, web=False) as rt:
        assert built[0].component(SyncComponent) is None and "sync" not in rt.components
