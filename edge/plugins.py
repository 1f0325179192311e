"""The plugin registry: every feature declares itself in one manifest, and the core reads only this.

A feature package (each driver, each sink, the rules engine, the Modbus server, the web UI, the
trend index) holds a `Plugin` in its `plugin.py` and names it under the `community_edge.plugins`
entry-point group of its distribution's pyproject.toml:

    [project.entry-points."community_edge.plugins"]
    modbus = "drivers.modbus.plugin:PLUGIN"

so a third party ships a driver or a sink as a package of its own, with no edit to the core. The
config loader asks the registry for drivers, sinks and top-level sections, the runtime for
components, the web server for routes and the CLI for commands: the core names no feature.

A manifest is imported when the CLI or the runtime starts, so it imports nothing heavy: every hook
is a function that imports its module when called (a site without cameras never loads OpenCV).
A plugin whose third-party modules are missing (`requires`) stays listed, and a site that uses it
is refused with the pip extra to install (`extra`).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    import argparse

    from aiohttp import web
    from prometheus_client import Metric
    from pydantic import BaseModel

    from edge.clock import ClockSample, ClockTrust
    from edge.config import Site
    from edge.driver import Driver
    from edge.hub import Hub
    from edge.model import Reading
    from edge.runtime import Runtime
    from edge.state import StateDB
    from edge.store import Journal
    from edge.store.backup import RestoreFacts
    from edge.store.rows import EventMatch

log = logging.getLogger("edge.plugins")

GROUP = "community_edge.plugins"
DISTRIBUTION = "community-edge"


class Component(Protocol):
    """A long-running part of a site beside the drivers (rules engine, sinks, trend index...)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


@runtime_checkable
class Reloadable(Protocol):
    """A component that re-reads its plugin's `live_sections` when the site file is reloaded."""

    async def reload(self) -> None: ...


@runtime_checkable
class MetricsSource(Protocol):
    """A component with Prometheus metrics of its own: `/metrics` yields what `collect_metrics()`
    answers at each scrape, beside the core's. It reads the component's plain counters then and
    imports prometheus_client only inside the call, so a gateway nobody scrapes never loads it."""

    def collect_metrics(self) -> Iterable[Metric]: ...


@runtime_checkable
class EventIndex(Protocol):
    """A component keeping an indexed copy of the journal's events (the trend index): its
    `newest_events(match, limit, scan_floor)` gives (the newest `limit` events that match,
    newest first, from its copy up to its cursor and from the journal's rows after it with seq >
    scan_floor; the scan's bound; its cursor). Called in a worker thread."""

    def newest_events(
        self, match: EventMatch, limit: int, scan_floor: int
    ) -> tuple[list[Any], int, int | None]: ...


T = TypeVar("T")


@dataclass(frozen=True)
class ComponentContext:
    """What a component (rules engine, sync, Modbus server, trend index...) gets from the runtime,
    instead of the `Runtime` itself: the site's config, the journal, the hub, the state database,
    the clock and the clock's trust, a way to own background tasks, the devices' capabilities
    (`driver_with`) and the other components by type (`component`). A component cannot reach a
    driver slot, restart a device or stop the web server, and what it depends on is written here."""

    site: Site
    journal: Journal
    hub: Hub
    #: rules, accounts, audit, dead letters (open before any component is built)
    state: StateDB
    clock: Callable[[], float]
    #: (wall, monotonic) read together: steps of the wall clock measured as the journal's
    #: retention measures them (injectable in the runtime, so a test drives a jump)
    clock_sample: Callable[[], ClockSample]
    #: whether the wall clock is believed, and why (checked by the runtime every 10 s)
    clock_trust: ClockTrust
    #: the newest good reading of each point found in the journal at start
    restored_good: Mapping[str, Reading]
    #: runs a background task the runtime owns (cancelled and awaited on stop)
    spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]]
    #: (device id, capability) -> the running driver with it; see `Runtime.driver_with`
    find_driver: Callable[[str, type[Any]], Any]
    #: component type -> the running component of that type; see `Runtime.component`
    find_component: Callable[[type[Any]], Any] = field(default=lambda kind: None)

    def driver_with(self, device_id: str, capability: type[T]) -> T | None:
        """The running driver of `device_id` as `capability` (a capability class of
        `edge.driver`), None while it restarts; LookupError with a message naming the device when
        the site has no such enabled device or its driver lacks the capability."""
        found: T | None = self.find_driver(device_id, capability)
        return found

    def component(self, kind: type[T]) -> T | None:
        """The component of this type, None when the site does not run one (or it starts later
        than the asking component: components are built in plugin order)."""
        found: T | None = self.find_component(kind)
        return found


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def lazy(target: str) -> Callable[..., Any]:
    """A hook that imports its code only when it runs: `lazy("pkg.module:function")` calls that
    function with the hook's arguments. Manifests name their code this way so that reading them
    (every command does) imports nothing heavy."""

    def hook(*args: Any) -> Any:
        return _resolve(target)(*args)

    hook.__qualname__ = hook.__name__ = f"lazy({target})"
    return hook


def lazy_value(target: str) -> Callable[[], Any]:
    """A hook that returns a module's attribute (a config model, a driver or sink class) imported
    only when asked for: `lazy_value("pkg.module:Model")`."""

    def hook() -> Any:
        return _resolve(target)

    hook.__qualname__ = hook.__name__ = f"lazy_value({target})"
    return hook


@dataclass(frozen=True)
class Spec:
    """A driver or a sink: its config model (light: `edge check` imports only this) and the class
    that runs it (may import the plugin's third-party modules)."""

    config: Callable[[], type[BaseModel]]
    load: Callable[[], Any]


@dataclass(frozen=True)
class Plugin:
    """What one feature adds to the runtime. Every hook is optional and imports lazily."""

    name: str
    #: pip extra that installs the third-party modules in `requires` (`community-edge[modbus]`)
    extra: str | None = None
    #: top-level modules the feature needs beyond the core (checked without importing them)
    requires: tuple[str, ...] = ()
    #: driver name in a device entry (`driver: modbus`) -> its device model and Driver class
    drivers: Mapping[str, Spec] = field(default_factory=dict)
    #: upstream `type:` -> its entry model and sink class
    sinks: Mapping[str, Spec] = field(default_factory=dict)
    #: top-level key of the site file -> the pydantic model of that section
    sections: Mapping[str, Callable[[], type[BaseModel]]] = field(default_factory=dict)
    #: those of `sections` a reload (SIGHUP) applies at once: the component's `reload()` re-reads
    #: them; a change to any other section is reported as needing a restart
    live_sections: tuple[str, ...] = ()
    #: those of `sections` a reload applies in part -> the keys it applies (the component's
    #: `reload()` reads them from the section in force); a change to any other key of the section
    #: is reported as `section.key` needing a restart
    live_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: builds the feature's component for a site from the runtime's narrow context (journal, hub,
    #: state, clock, capabilities of the devices...), or None when the site does not use it
    component: Callable[[ComponentContext], Component | None] | None = None
    #: adds the feature's HTTP routes (`setup(app, runtime)`)
    routes: Callable[[web.Application, Runtime], None] | None = None
    #: adds the feature's `edge` commands (must not import heavy modules: the CLI loads it always)
    commands: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] | None = None
    #: problems `edge check` reports beyond the schema (e.g. a rule pack that does not compile):
    #: lines for stderr, empty when the site is fine
    check: Callable[[Site], list[str]] | None = None
    #: what `edge check` prints as warnings: allowed, and not refused by check or by a reload, but
    #: worth a decision (e.g. a served point whose range cannot fit its register); same line form
    warnings: Callable[[Site], list[str]] | None = None
    #: OpenAPI paths of the routes this plugin adds (merged into the document at /api/v1/openapi.json)
    openapi: Callable[[], Mapping[str, Any]] | None = None
    #: the state DB components this feature keeps -> its migrations (lazy): a restore refuses an
    #: archive whose state DB has a component newer than this program knows
    state_schemas: Mapping[str, Callable[[], Sequence[str]]] = field(default_factory=dict)
    #: what a restore does to this feature's state, by the state component that keeps it (lazy):
    #: `step(state_copy, facts) -> (lines for the restore's report, a line starting "warning: " a
    #: warning; fields for its journal_restored event)`, run by `edge.backup` on the restored state
    #: DB's copy before anything is put in place, when the copy holds that component. State that
    #: holds only while no time passes (a rule's pending `for:`) or that the replaced journal moved
    #: on (a KPI day it closed, its kpi_daily sent) is put right there, once
    restored_state: Mapping[str, Callable[[str, RestoreFacts], tuple[list[str], dict[str, Any]]]] = field(
        default_factory=dict
    )
    #: the copies of records this feature keeps beside the journal that name a resident
    #: (`subject_records(site, state, subject)`: a sink's dead letters), for a subject's export;
    #: each a dict whose `type` says what it is, with the `record` it copies
    subject_records: Callable[[Site, StateDB, str], Iterable[dict[str, Any]]] | None = None
    #: journal cursors its component keeps under a fixed name -> whose they are ("the KPI fold"):
    #: an upstream sink or a pull consumer of that id would read and move them as its own, so
    #: `edge check` and token creation refuse such an id
    cursors: Mapping[str, str] = field(default_factory=dict)
    #: start order among components and routes (lower first)
    order: int = 50

    def missing(self) -> list[str]:
        """The modules in `requires` that cannot be imported here (looked up once per process:
        the OpenAPI document asks at every request)."""
        return [m for m in self.requires if not _importable(m)]

    def install_hint(self) -> str:
        missing = self.missing()
        if not missing:
            return ""
        extra = self.extra or self.name
        return (
            f"the {self.name} plugin needs the Python modules {', '.join(missing)}, which this installation lacks: "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        )


@functools.cache
def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class StartError(RuntimeError):
    """A site that cannot start for a reason a person can fix (the message says how): the
    runtime, or a component's `start`, raises it; `edge run` prints the message and exits 1."""


class PluginConflict(ValueError):
    """Two installed plugins declare the same driver, sink or section."""


class UnknownPlugin(LookupError):
    pass


class PluginUnavailable(LookupError):
    """The plugin is registered but its third-party modules are not installed."""


class Registry:
    """The plugins of this installation, sorted by `order` then name."""

    def __init__(self, plugins: Iterable[Plugin]) -> None:
        self.plugins: list[Plugin] = sorted(plugins, key=lambda p: (p.order, p.name))
        self._check_unique("drivers")
        self._check_unique("sinks")
        self._check_unique("sections")

    def _check_unique(self, kind: str) -> None:
        owner: dict[str, str] = {}
        for p in self.plugins:
            for key in getattr(p, kind):
                if key in owner:
                    raise PluginConflict(
                        f"plugins {owner[key]!r} and {p.name!r} both declare {kind[:-1]} {key!r}"
                    )
                owner[key] = p.name

    def _owner(self, kind: str, key: str) -> Plugin | None:
        return next((p for p in self.plugins if key in getattr(p, kind)), None)

    def names(self, kind: str) -> list[str]:
        return sorted(k for p in self.plugins for k in getattr(p, kind))

    def _find(self, kind: str, key: str, what: str, known_as: str = "known") -> Any:
        plugin = self._owner(kind, key)
        if plugin is None:
            known = ", ".join(self.names(kind)) or "none"
            raise UnknownPlugin(f"unknown {what} {key!r}; {known_as}: {known}")
        hint = plugin.install_hint()
        if hint:
            raise PluginUnavailable(f"{what} {key!r}: {hint}")
        return getattr(plugin, kind)[key]

    def device_model(self, driver: str) -> type[BaseModel]:
        """The model of a device entry with `driver: NAME` (UnknownPlugin, PluginUnavailable)."""
        return self._find("drivers", driver, "driver", "known drivers").config()  # type: ignore[no-any-return]

    def driver(self, name: str) -> type[Driver]:
        return self._find("drivers", name, "driver", "known drivers").load()  # type: ignore[no-any-return]

    def sink_model(self, kind: str) -> type[BaseModel]:
        return self._find("sinks", kind, "upstream type").config()  # type: ignore[no-any-return]

    def sink(self, kind: str) -> Any:
        return self._find("sinks", kind, "upstream type").load()

    def section(self, key: str) -> type[BaseModel]:
        return self._find("sections", key, "section")()  # type: ignore[no-any-return]

    def section_keys(self) -> set[str]:
        return {k for p in self.plugins for k in p.sections}

    def component_cursors(self) -> dict[str, str]:
        """Every plugin's fixed journal cursors -> whose they are (`Plugin.cursors`)."""
        return {name: whose for p in self.plugins for name, whose in p.cursors.items()}

    def live_section_keys(self) -> set[str]:
        return {k for p in self.plugins for k in p.live_sections}

    def live_keys(self) -> dict[str, tuple[str, ...]]:
        """Every plugin section a reload applies in part -> the keys it applies (`Plugin.live_keys`)."""
        return {sec: keys for p in self.plugins for sec, keys in p.live_keys.items()}

    def with_hook(self, hook: str) -> list[Plugin]:
        """Plugins that define `hook` and whose modules are installed, in order."""
        return [p for p in self.plugins if getattr(p, hook) is not None and not p.missing()]


def discover() -> list[Plugin]:
    """The plugins named in the `community_edge.plugins` entry-point group of every installed
    distribution. A manifest that fails to import is logged and left out."""
    found: list[Plugin] = []
    for name, value in entry_points_of(GROUP):
        try:
            plugin = _resolve_entry_point(value)
        except Exception:
            log.exception("plugin %s (%s) cannot be loaded", name, value)
            continue
        if not isinstance(plugin, Plugin):
            log.error("plugin %s (%s) is not an edge.plugins.Plugin", name, value)
            continue
        found.append(plugin)
    return found


def entry_points_of(group: str) -> list[tuple[str, str]]:
    """(name, "module:attr") of every entry point in `group`, found as importlib.metadata finds
    them: the distributions on sys.path in its order, the first one of each name only.

    importlib.metadata brings zipfile, csv, email and importlib.resources into a process (0.7 MB
    resident beside a gateway's other modules, for as long as it runs) to read what is, for a
    distribution installed in a directory, one small text file: this reads that file, and leaves
    to importlib.metadata the layouts it alone reads (a zip archive or an egg on sys.path, a
    finder of its own)."""
    texts = _entry_point_texts()
    if texts is None:
        from importlib.metadata import entry_points

        return [(ep.name, ep.value) for ep in entry_points(group=group)]
    return [entry for text in texts for entry in _entries(text, group)]


_texts_read: tuple[tuple[str, ...], list[str] | None] | None = None  # (sys.path, its texts)


def _entry_point_texts() -> list[str] | None:
    """The text of each distribution's entry_points.txt (`_entry_point_files`), read once for a
    given sys.path: pydantic's plugin look-up at import and the plugin discovery after it ask for
    the same files. None where importlib.metadata must read them."""
    global _texts_read
    key = tuple(sys.path)
    if _texts_read is not None and _texts_read[0] == key:
        return _texts_read[1]
    files = _entry_point_files()
    texts: list[str] | None = None
    if files is not None:
        texts = []
        for path in files:
            try:
                with open(path, encoding="utf-8") as f:
                    texts.append(f.read())
            except (OSError, UnicodeDecodeError):  # importlib.metadata finds nothing there either
                continue
    _texts_read = (key, texts)
    return texts


def _entry_point_files() -> list[str] | None:
    """The entry_points.txt of each distribution on sys.path (first of each name), or None when
    something there is not a plain directory of distributions."""
    from importlib.machinery import PathFinder

    if any(hasattr(finder, "find_distributions") and finder is not PathFinder for finder in sys.meta_path):
        return None
    files: list[str] = []
    seen: set[str] = set()
    for entry in sys.path:
        root = entry or "."
        if not os.path.isdir(root):
            if os.path.exists(root):  # a zip archive: importlib.metadata reads into those
                return None
            continue
        if root.lower().endswith(".egg"):
            return None
        try:
            children = os.listdir(root)
        except OSError:
            continue
        for child in children:
            low = child.lower()
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            # importlib.metadata's normalised distribution name: a later copy of one is ignored
            name = re.sub(r"[-_.]+", "_", low.rpartition(".")[0].partition("-")[0])
            if name in seen:
                continue
            seen.add(name)
            path = os.path.join(root, child, "entry_points.txt")
            if os.path.isfile(path):
                files.append(path)
    return files


def _entries(text: str, group: str) -> Iterator[tuple[str, str]]:
    """(name, value) of the lines of `[group]` in an entry_points.txt, parsed as importlib.metadata
    parses it."""
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section == group and "=" in line:
            name, _, value = line.partition("=")
            yield name.strip(), value.strip()


def _resolve_entry_point(value: str) -> Any:
    """The object an entry point names: `pkg.module:attr.sub [extra]` as importlib.metadata reads it."""
    target = value.split("[", 1)[0].strip()
    module, _, attrs = target.partition(":")
    obj = importlib.import_module(module.strip())
    for attr in filter(None, attrs.strip().split(".")):
        obj = getattr(obj, attr)
    return obj


#: pydantic's module that reads the `pydantic` entry-point group with importlib.metadata
PYDANTIC_LOADER = "pydantic.plugin._loader"


def spare_pydantic_the_metadata_library() -> bool:
    """Answer pydantic's plugin lookup without importlib.metadata when the answer is known.

    The first time pydantic builds a model it imports its plugin loader, which imports
    importlib.metadata (and through it zipfile, csv, importlib.resources: 0.7 MB resident for as
    long as a gateway runs) to look for distributions declaring a `pydantic` entry point. When the
    distributions' entry_points.txt show that none does, that loader would find no plugin: this
    puts a loader in its place that says so, and pydantic builds plain validators as it would
    have. With a pydantic plugin installed, or anything on sys.path only importlib.metadata
    reads, or pydantic's loader already imported, it changes nothing. True when it took effect."""
    if PYDANTIC_LOADER in sys.modules:
        return False
    texts = _entry_point_texts()
    if texts is None or any(True for text in texts for _ in _entries(text, "pydantic")):
        return False
    import types

    loader = types.ModuleType(
        PYDANTIC_LOADER, "pydantic's plugin loader where no pydantic plugin is installed"
    )
    loader.PYDANTIC_ENTRY_POINT_GROUP = "pydantic"  # type: ignore[attr-defined]
    loader._plugins = {}  # type: ignore[attr-defined]
    loader._loading_plugins = False  # type: ignore[attr-defined]
    loader.get_plugins = _no_pydantic_plugins  # type: ignore[attr-defined]
    sys.modules[PYDANTIC_LOADER] = loader
    return True


def _no_pydantic_plugins() -> tuple[()]:
    return ()


spare_pydantic_the_metadata_library()

_registry: Registry | None = None


def registry() -> Registry:
    """The registry of this process (discovered once)."""
    global _registry
    if _registry is None:
        _registry = Registry(discover())
    return _registry


def use(plugins: Iterable[Plugin] | None) -> None:
    """Replace the process's registry (None: discover again on next use)."""
    global _registry
    _registry = None if plugins is None else Registry(plugins)
