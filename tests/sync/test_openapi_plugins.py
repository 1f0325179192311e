"""The OpenAPI document is the core's paths plus every installed plugin's `openapi` hook: a
feature left out of the registry leaves no path behind, a plugin from outside the project adds
its own, and two parts describing one path or operation id are refused by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge import plugins
from edge.api import openapi
from edge.api.openapi_base import ok, op
from edge.plugins import Plugin
from tests.support.site import running_site
from tests.sync.test_openapi import assert_describes, routes

EXAMPLE_PATH = "/api/v1/example/reading"


def example_paths() -> dict[str, Any]:
    return {EXAMPLE_PATH: {"get": op("exampleReading", "The example plugin's reading", {"200": ok({})})}}


@pytest.fixture
def registry() -> Iterator[Callable[..., None]]:
    """`registry(drop=[names], add=[plugins])`: this installation's plugins, some left out or
    added; the discovered registry comes back when the test ends."""

    def use(drop: tuple[str, ...] = (), add: tuple[Plugin, ...] = ()) -> None:
        kept = [p for p in plugins.discover() if p.name not in drop]
        assert len(kept) == len(plugins.discover()) - len(drop), f"not all of {drop} are installed"
        plugins.use([*kept, *add])

    yield use
    plugins.use(None)


@pytest.mark.parametrize(
    ("plugin", "prefix"),
    [
        ("rules", "/api/v1/rules"),
        ("sync", "/api/v1/sync"),
        ("modbus", "/api/v1/commission"),
        ("web-ui", "/api/v1/history"),
    ],
)
async def test_without_a_plugin_the_document_has_none_of_its_paths(
    tmp_path: Path, registry: Callable[..., None], plugin: str, prefix: str
) -> None:
    assert any(p.startswith(prefix) for p in openapi.document()["paths"])
    registry(drop=(plugin,))
    doc = openapi.document()
    assert [p for p in doc["paths"] if p.startswith(prefix)] == []
    async with running_site(tmp_path, {}) as rt:
        # the site serves none of the plugin's routes either, and the rest is still described exactly
        assert_describes(doc, routes(rt.web_runner.app))


def test_a_plugin_from_outside_adds_its_paths(registry: Callable[..., None]) -> None:
    registry(add=(Plugin(name="example", openapi=example_paths),))
    doc = openapi.document()
    assert doc["paths"][EXAMPLE_PATH]["get"]["operationId"] == "exampleReading"
    assert "/api/v1/rules" in doc["paths"] and "/api/v1/stream" in doc["paths"]


def test_a_plugin_whose_modules_are_missing_adds_no_paths(registry: Callable[..., None]) -> None:
    registry(add=(Plugin(name="example", requires=("no_such_module_for_edge",), openapi=example_paths),))
    assert EXAMPLE_PATH not in openapi.document()["paths"]


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (
            lambda: {"/api/v1/rules": {"get": op("exampleRules", "again", {"200": ok({})})}},
            "plugin 'example' describes /api/v1/rules, which plugin 'rules' already describes",
        ),
        (
            lambda: {"/api/v1/example": {"get": op("stream", "again", {"200": ok({})})}},
            "plugin 'example': operationId 'stream' of GET /api/v1/example is already used by the core",
        ),
        (
            lambda: {"paths": example_paths()},
            "plugin 'example': openapi path 'paths' does not start with '/'",
        ),
        (lambda: [EXAMPLE_PATH], "plugin 'example': the openapi hook answered list"),
    ],
    ids=["path", "operation-id", "not-a-path", "not-a-mapping"],
)
def test_a_plugin_that_clashes_is_refused_by_name(
    registry: Callable[..., None], hook: Callable[[], Any], message: str
) -> None:
    registry(add=(Plugin(name="example", openapi=hook),))
    with pytest.raises(openapi.PathsRefused) as caught:
        openapi.document()
    assert message in str(caught.value)
