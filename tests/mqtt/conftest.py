from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge import plugins
from tests.mqtt.broker import Broker
from tests.support.tools import missing


@pytest.fixture(autouse=True)
def mqtt_plugin() -> Iterator[None]:
    """The mqtt sink registered beside the installed plugins (whether or not its entry point is);
    its client library is the `mqtt` extra."""
    from edge.mqtt.plugin import PLUGIN

    if importlib.util.find_spec("aiomqtt") is None:
        missing("python module aiomqtt is not installed", "pip install 'community-edge[mqtt]'")

    found = plugins.discover()
    plugins.use(found if any(p.name == "mqtt" for p in found) else [*found, PLUGIN])
    yield
    plugins.use(None)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start mosquitto with `broker(extra_config)`; every one started is stopped by PID at the end."""
    started: list[Broker] = []

    def start(extra: str = "", **kw: Any) -> Broker:
        b = Broker(tmp_path / f"broker{len(started)}", extra=extra, **kw)
        started.append(b)
        return b

    yield start
    for b in started:
        b.kill()
