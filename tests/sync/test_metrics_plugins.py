"""`/metrics` holds the families of every component that implements `edge.plugins.MetricsSource`,
read at each scrape: a component from a plugin outside the project shows up as the sync and rules
components do, one whose metrics fail is left out of that scrape only, and the core's collector
names no feature."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily

from edge import plugins
from edge.api import metrics
from edge.api.tokens import create_token
from edge.plugins import ComponentContext, MetricsSource, Plugin
from tests.support.site import running_site
from tests.sync.test_metrics_cli import samples, scrape
from tests.sync.test_openapi_plugins import registry  # noqa: F401 (the fixture)

PRESSES = ("edge_doorbell_presses_total", (("door", "front"),))


class Doorbell:
    """A plugin's component with metrics of its own: the presses counted since start."""

    name = "doorbell"

    def __init__(self) -> None:
        self.presses = 3

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"presses": self.presses}

    def collect_metrics(self) -> Iterator[Metric]:
        family = CounterMetricFamily("edge_doorbell_presses", "Presses since start", labels=["door"])
        family.add_metric(["front"], self.presses)
        yield family


class BrokenDoorbell(Doorbell):
    name = "broken_doorbell"

    def collect_metrics(self) -> Iterator[Metric]:
        yield CounterMetricFamily("edge_broken_half", "Yielded before the failure", value=1)
        raise RuntimeError("the bell's counter is unreadable")


def doorbell_plugin(component: Callable[[ComponentContext], Doorbell], name: str = "doorbell") -> Plugin:
    return Plugin(name=name, component=component)


async def test_a_component_from_a_plugin_shows_up_at_each_scrape(
    tmp_path: Path,
    registry: Callable[..., None],  # noqa: F811
) -> None:
    bell = Doorbell()
    assert isinstance(bell, MetricsSource)
    registry(add=(doorbell_plugin(lambda ctx: bell),))
    async with running_site(tmp_path, {}) as rt:
        assert rt.components["doorbell"] is bell
        token = create_token(rt.state, "prom", ["read"])
        first = samples(await scrape(rt.web_port, token))
        bell.presses = 5
        second = samples(await scrape(rt.web_port, token))
    assert first[PRESSES] == 3
    assert second[PRESSES] == 5  # read at the scrape, not when the component started
    assert ("edge_readings_received_total", ()) in second  # beside the core's own families


async def test_a_component_whose_metrics_fail_is_left_out_of_that_scrape(
    tmp_path: Path,
    registry: Callable[..., None],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry(
        add=(
            doorbell_plugin(lambda ctx: BrokenDoorbell(), name="broken"),
            doorbell_plugin(lambda ctx: Doorbell()),
        )
    )
    async with running_site(tmp_path, {}) as rt:
        with caplog.at_level(logging.ERROR, logger="edge.metrics"):
            got = samples(await scrape(rt.web_port, create_token(rt.state, "prom", ["read"])))
    assert got[PRESSES] == 3 and ("edge_readings_received_total", ()) in got
    assert ("edge_broken_half_total", ()) not in got  # nothing half-read from the failed one
    assert any("broken_doorbell" in r.getMessage() for r in caplog.records), caplog.text


def test_the_core_collector_names_no_feature() -> None:
    source = Path(metrics.__file__).read_text(encoding="utf-8")
    named = [
        p.name for p in plugins.discover() if re.search(rf"\b{re.escape(p.name)}\b", source, re.IGNORECASE)
    ]
    assert named == [], f"edge/api/metrics.py names the features {named}"
    for word in ("sink", "consumer", "rule"):
        assert word not in source.lower(), f"edge/api/metrics.py knows the {word} families"
