"""Route handlers are module-level functions that take the request: no handler is a closure made
inside `setup()`, so each one can be read, imported and tested on its own, and the state it needs
is in the app (`request.app[...]`, `edge.api.app.get_runtime`), put there by `setup()`.

Checked twice: in the source (no `async def` inside another function, and every route that
`setup()` adds names a module-level function) and on a running site's app (every route's handler
from these modules is the module's attribute of that name).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.site import running_site

ROOT = Path(__file__).resolve().parents[2]
HANDLER_FILES = [
    *sorted((ROOT / "edge" / "api").glob("*.py")),
    *sorted((ROOT / "edge" / "web").glob("*.py")),
    ROOT / "rules" / "api.py",
    ROOT / "edge" / "sync" / "api.py",
    ROOT / "drivers" / "modbus" / "commission.py",
]
ROUTE_MODULES = {
    "edge.api.tokens",
    "edge.api.core_routes",
    "edge.api.pull",
    "edge.api.metrics",
    "edge.api.account_routes",
    "edge.api.blobs",
    "edge.web.ui_api",
    "edge.web.live",
    "edge.web.ui",
    "rules.api",
    "edge.sync.api",
    "drivers.modbus.commission",
}
ROUTE_CALLS = {"add_get", "add_post", "add_put", "add_patch", "add_delete", "add_head", "add_route"}
ROUTE_DEFS = {"get", "post", "put", "patch", "delete", "head", "route", "view"}
SITE = """
site: {id: handlers, name: handlers}
devices:
  - id: meter
    driver: sim
    points:
      - {name: power_kw, signal: sine, min: 2, max: 9, period: 20s, interval: 1s}
rules: {enabled: true}
"""


def nested_async_defs(tree: ast.Module) -> Iterator[str]:
    """`outer -> inner (line)` for every `async def` inside a function."""
    for outer in ast.walk(tree):
        if isinstance(outer, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(outer):
                if inner is not outer and isinstance(inner, ast.AsyncFunctionDef):
                    yield f"{outer.name} -> {inner.name} (line {inner.lineno})"


def routes_not_to_module_functions(tree: ast.Module) -> Iterator[str]:
    """Every handler given to the router (`router.add_get(path, h)`, `add_route(m, path, h)`) or
    to a route table (`web.get(path, h)`) that is not the name of a module-level function."""
    top = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        is_table = func.attr in ROUTE_DEFS and isinstance(func.value, ast.Name) and func.value.id == "web"
        if not (func.attr in ROUTE_CALLS or is_table):
            continue
        at = 2 if func.attr in ("add_route", "route") else 1
        handler = node.args[at] if len(node.args) > at else None
        if handler is None:
            handler = next((k.value for k in node.keywords if k.arg == "handler"), None)
        if not (isinstance(handler, ast.Name) and handler.id in top):
            shown = ast.unparse(handler) if handler is not None else "?"
            yield f"{ast.unparse(func)}(..., {shown}) (line {node.lineno})"


def _findings(check: Any, files: list[Path]) -> list[str]:
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}: {finding}"
        for path in files
        for finding in check(ast.parse(path.read_text(encoding="utf-8")))
    ]


def test_no_handler_is_defined_inside_a_function() -> None:
    assert _findings(nested_async_defs, HANDLER_FILES) == [], "make it a module-level async def"


def test_every_route_added_in_source_names_a_module_level_function() -> None:
    assert _findings(routes_not_to_module_functions, HANDLER_FILES) == []


def test_the_checks_find_closures_and_made_handlers(tmp_path: Path) -> None:
    """The checks above must not pass because they went blind: the shapes handlers had."""
    old = tmp_path / "old.py"
    old.write_text(
        "def setup(app, runtime):\n"
        "    async def history(request):\n"
        "        return runtime\n"
        "    app.router.add_get('/api/v1/history', history)\n"
        "def _toggle(enabled):\n"
        "    async def handler(request):\n"
        "        return enabled\n"
        "    return handler\n"
        "async def fine(request):\n"
        "    return None\n"
        "ROUTES = [web.post('/a', _toggle(True)), web.get('/b', fine)]\n"
        "def setup2(app):\n"
        "    app.router.add_route('GET', '/c', lambda request: None)\n"
        "    app.router.add_get('/d', handler=fine)\n",
        encoding="utf-8",
    )
    assert _findings(nested_async_defs, [old]) == [
        "old.py: setup -> history (line 2)",
        "old.py: _toggle -> handler (line 6)",
    ]
    assert _findings(routes_not_to_module_functions, [old]) == [
        "old.py: app.router.add_get(..., history) (line 4)",
        "old.py: web.post(..., _toggle(True)) (line 11)",
        "old.py: app.router.add_route(..., lambda request: None) (line 13)",
    ]


def _handler(route: web.AbstractRoute) -> Any:
    return route.handler


async def test_every_route_of_a_running_site_is_a_module_level_function(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        routes = [
            r for r in rt.web_runner.app.router.routes() if not isinstance(r.resource, web.StaticResource)
        ]
        seen: set[str] = set()
        closures = []
        for route in routes:
            handler = _handler(route)
            module = getattr(handler, "__module__", "")
            if module not in ROUTE_MODULES:
                continue
            seen.add(module)
            name = getattr(handler, "__qualname__", "")
            if getattr(sys.modules[module], name, None) is not handler:
                closures.append(
                    f"{route.method} {route.resource.canonical if route.resource else '?'}: {name}"
                )
    assert closures == []
    assert seen == ROUTE_MODULES, "each route module's routes were looked at"
