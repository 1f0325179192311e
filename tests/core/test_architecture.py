"""The rule of the arrows (docs/architecture.md) holds: the import-linter contracts in
pyproject.toml are kept, they cover every module of the core, they catch a wrong arrow when one is
planted, no two modules import each other through a circle, and the core names no feature package
in a string it could hand to importlib (an arrow import-linter cannot see).
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOT_PACKAGES = ("edge", "drivers", "rules")
CONFIG: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "importlinter"
]
CONTRACTS: dict[str, dict[str, Any]] = {c["id"]: c for c in CONFIG["contracts"]}
CORE = "core-imports-no-feature"
EXTRAS = "core-without-extras"
DRIVERS = "drivers-see-only-the-contract"
WEB = "nothing-imports-the-web-ui"
# what the runtime hands a driver through DriverContext.blobs (the camera's blob store)
HANDED_TO_DRIVERS = {"edge.store.blobs"}
# the kit the core offers a plugin's routes: auth, problem+json, privacy, OpenAPI helpers
API_KIT = {"edge.api.auth", "edge.api.problem", "edge.api.privacy", "edge.api.openapi_base"}


def lint_imports() -> str:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is not installed in the virtualenv (import-linter is in the test extras)")
    return exe


def run_lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # --no-cache: the graph takes well under a second to build, and a cache would write into the tree
    return subprocess.run(
        [lint_imports(), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*ROOT_PACKAGES, exclude_type_checking_imports=True)


def expand(g: grimp.ImportGraph, expressions: Iterable[str]) -> set[str]:
    """The modules a contract's module expressions name (`*` one level, `**` any depth)."""
    found: set[str] = set()
    for expr in expressions:
        if "*" in expr:
            found |= g.find_matching_modules(expr)
        elif expr in g.modules:
            found.add(expr)
    return found


def feature_packages() -> list[str]:
    """The feature packages the core may not name: the core contract's forbidden modules."""
    return [m for m in CONTRACTS[CORE]["forbidden_modules"] if "*" not in m]


def names_feature(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in feature_packages())


# -- the contracts are kept ---------------------------------------------------------------------


def test_lint_imports_keeps_every_contract() -> None:
    proc = run_lint_imports(ROOT)
    assert proc.returncode == 0, "lint-imports found wrong arrows:\n" + proc.stdout + proc.stderr


def test_no_import_is_ignored_by_a_contract() -> None:
    """An ignored import is a wrong arrow kept on purpose: none is, today."""
    ignored = {c["id"]: c.get("ignore_imports") for c in CONFIG["contracts"] if c.get("ignore_imports")}
    assert not ignored, f"contracts that ignore imports: {ignored}"


# -- the contracts cover the tree ---------------------------------------------------------------


def test_every_module_of_edge_is_core_or_feature() -> None:
    """A module added to edge/ falls under the rule: it is listed as core (and then may import no
    feature) or lives in a feature package."""
    g = graph()
    core = expand(g, CONTRACTS[CORE]["source_modules"])
    features = expand(g, CONTRACTS[CORE]["forbidden_modules"])
    edge = {m for m in g.modules if m == "edge" or m.startswith("edge.")}
    unlisted = sorted(edge - core - features)
    assert not unlisted, (
        f"modules of edge/ that are neither core nor inside a feature package: {unlisted}; list a core "
        f"module in the source_modules of contracts {CORE!r} and {EXTRAS!r} ([tool.importlinter] in "
        "pyproject.toml), or a new feature package in their forbidden_modules"
    )
    assert not core & features, f"modules both core and feature: {sorted(core & features)}"


def test_the_extras_contract_covers_the_same_core() -> None:
    assert sorted(CONTRACTS[EXTRAS]["source_modules"]) == sorted(CONTRACTS[CORE]["source_modules"])
    assert set(CONTRACTS[EXTRAS]["forbidden_modules"]) >= {"pymodbus", "serial", "bleak", "cv2", "numpy"}
    assert CONFIG.get("include_external_packages") is True  # without it the extras are not in the graph


def test_drivers_may_reach_no_store_module_but_the_blob_store() -> None:
    g = graph()
    store = {m for m in g.modules if m.startswith("edge.store.")}
    forbidden = expand(g, CONTRACTS[DRIVERS]["forbidden_modules"])
    open_to_drivers = sorted(store - forbidden - HANDED_TO_DRIVERS)
    assert not open_to_drivers, (
        f"store modules drivers may import: {open_to_drivers}; add them to the forbidden_modules "
        f"of contract {DRIVERS!r} in pyproject.toml"
    )


def test_drivers_may_reach_no_api_module_but_the_kit_for_routes() -> None:
    g = graph()
    api = {m for m in g.modules if m.startswith("edge.api.")}
    forbidden = expand(g, CONTRACTS[DRIVERS]["forbidden_modules"])
    open_to_drivers = sorted(api - forbidden - API_KIT)
    assert not open_to_drivers, (
        f"API modules drivers may import: {open_to_drivers}; add them to the forbidden_modules "
        f"of contract {DRIVERS!r} in pyproject.toml"
    )


# -- the contracts catch a planted wrong arrow --------------------------------------------------

# (file, line appended, contract id, the import lint-imports must report under that contract)
# Each plant: the file, the line appended to it, the contract it breaks, and what lint-imports must
# say: "... is not allowed to import TARGET:" over a chain that is the planted import alone (a
# direct arrow, not a longer chain through a module that happens to be listed).
PLANTED = [
    ("edge/paths.py", "import rules.engine", CORE, "rules.engine", "edge.paths -> rules.engine"),
    (
        "edge/api/limits.py",
        "import drivers.sim.driver",
        CORE,
        "drivers.sim.driver",
        "edge.api.limits -> drivers.sim.driver",
    ),
    (
        "edge/store/space.py",
        "import edge.trend.plugin",
        CORE,
        "edge.trend.plugin",
        "edge.store.space -> edge.trend.plugin",
    ),
    (
        "drivers/sim/driver.py",
        "import edge.runtime",
        DRIVERS,
        "edge.runtime",
        "drivers.sim.driver -> edge.runtime",
    ),
    (
        "drivers/ble/scanner.py",
        "import edge.store.journal",
        DRIVERS,
        "edge.store.journal",
        "drivers.ble.scanner -> edge.store.journal",
    ),
    ("rules/expr.py", "import edge.web.ui", WEB, "edge.web", "rules.expr -> edge.web.ui"),
    ("edge/yamlpos.py", "import edge.web.ui", WEB, "edge.web", "edge.yamlpos -> edge.web.ui"),
    (
        "drivers/ble/bthome.py",
        "import drivers.camera.points",
        "drivers-independent",
        "drivers.camera",
        "drivers.ble.bthome -> drivers.camera.points",
    ),
    # a lazy import is an arrow too
    ("edge/fileperm.py", "def _later():\n    import numpy", EXTRAS, "numpy", "edge.fileperm -> numpy"),
    ("edge/sdnotify.py", "import serial", EXTRAS, "serial", "edge.sdnotify -> serial"),
]
# a circle between two modules of rules/ (siblings of one package)
CIRCLE = [("rules/cron.py", "import rules.templates"), ("rules/templates.py", "import rules.cron")]

HEADING = re.compile(r"^\S+ is not allowed to import (\S+):$")
HOP = re.compile(r"^[-&\s]*(\S+ -> \S+) \(l\.[^)]*\)$")


def broken_contracts(output: str) -> dict[str, list[str]]:
    """The report of each broken contract (by id), one line per entry, blank lines dropped."""
    _, _, broken = output.partition("Broken contracts")
    names = {c["name"]: c["id"] for c in CONFIG["contracts"]}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in broken.splitlines():
        if line.strip() in names:
            current = names[line.strip()]
            sections[current] = []
        elif current is not None and line.strip():
            sections[current].append(line.rstrip())
    return sections


def chains(report: list[str]) -> list[tuple[str, list[str]]]:
    """(forbidden target, the chain's arrows) for each chain of a forbidden or independence report."""
    found: list[tuple[str, list[str]]] = []
    target = ""
    for line in report:
        if m := HEADING.match(line):
            target = m.group(1)
            continue
        # "-" opens a chain; a chain whose first step has several importers goes on with "& ..."
        if line.startswith("-") and set(line) != {"-"}:  # not the contract name's underline
            found.append((target, []))
        if found and (m := HOP.match(line)):
            found[-1][1].append(m.group(1))
    return found


def test_each_contract_catches_a_planted_wrong_arrow(tmp_path: Path) -> None:
    for pkg in ROOT_PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for path, line in [(p[0], p[1]) for p in PLANTED] + CIRCLE:
        with (tmp_path / path).open("a", encoding="utf-8") as f:
            f.write(f"\n\n{line}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    # the copy is the one analysed, not the installed tree
    probe = subprocess.run(
        [sys.executable, "-c", "import edge; print(edge.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == str(tmp_path / "edge" / "__init__.py"), probe.stdout + probe.stderr

    proc = run_lint_imports(tmp_path, env)
    assert proc.returncode != 0, proc.stdout
    reports = broken_contracts(proc.stdout)
    for path, _, contract, target, arrow in PLANTED:
        assert contract in reports, f"{contract} is not broken by {path}: {arrow}\n{proc.stdout}"
        assert (target, [arrow]) in chains(reports[contract]), (
            f"{contract} does not report {arrow} as a forbidden import of {target}:\n"
            + "\n".join(reports[contract])
        )
    circles = reports.get("no-circles", [])
    assert "No cycles are allowed in rules." in circles, proc.stdout
    assert "- .cron -> .templates (1 import)" in circles or "- .templates -> .cron (1 import)" in circles, (
        circles
    )


# -- no circles anywhere in the graph -----------------------------------------------------------


def strongly_connected(g: grimp.ImportGraph) -> list[list[str]]:
    """The groups of modules that import each other in a circle (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(g.modules):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work.append((start, iter(sorted(g.find_modules_directly_imported_by(start)))))
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(g.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    group.append(m)
                    if m == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def a_circle(g: grimp.ImportGraph, group: list[str]) -> str:
    """One circle through the group's first module, each arrow with its line."""
    members = set(group)
    start = group[0]
    came_from: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(g.find_modules_directly_imported_by(node) & members):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                path.reverse()
                path.append(start)
                arrows = []
                for a, b in itertools.pairwise(path):
                    line = g.get_import_details(importer=a, imported=b)[0]["line_number"]
                    arrows.append(f"{a} (l.{line}) -> {b}")
                return "\n    ".join(arrows)
            if nxt not in came_from and nxt != start:
                came_from[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"no circle through {start}")


def test_no_two_modules_import_each_other_through_a_circle() -> None:
    """Across the three top-level packages too (rules <-> edge.sync, say), which the sibling
    contract does not look at."""
    g = graph()
    groups = strongly_connected(g)
    report = "\n".join(f"- {len(grp)} modules: {', '.join(grp)}\n    {a_circle(g, grp)}" for grp in groups)
    assert not groups, "import circles:\n" + report


def test_the_circle_finder_finds_a_circle_across_packages() -> None:
    g = grimp.ImportGraph()
    for m in ("rules", "rules.engine", "edge", "edge.sync", "edge.sync.base", "edge.model"):
        g.add_module(m)
    g.add_import(importer="rules.engine", imported="edge.sync.base", line_number=3, line_contents="x")
    g.add_import(importer="edge.sync.base", imported="rules.engine", line_number=7, line_contents="y")
    g.add_import(importer="edge.sync.base", imported="edge.model", line_number=8, line_contents="z")
    assert strongly_connected(g) == [["edge.sync.base", "rules.engine"]]
    assert a_circle(g, ["edge.sync.base", "rules.engine"]) == (
        "edge.sync.base (l.7) -> rules.engine\n    rules.engine (l.3) -> edge.sync.base"
    )


# -- no feature named in a string the core could import -----------------------------------------

IMPORTERS = {"import_module", "__import__", "find_spec", "load_module", "run_module", "entry_points"}


def module_path(text: str) -> str | None:
    """The module a string names when it reads as `a.b.c` or `a.b.c:attr`, else None."""
    name = text.split(":", 1)[0]
    parts = name.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        return None
    return name


def called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def feature_strings(source: str, filename: str) -> list[str]:
    """`file:line: 'string'` for each string of this source that names a feature package in a way
    importlib could use: a dotted module path anywhere, or a bare package name handed straight to
    an import function."""
    found: list[str] = []
    tree = ast.parse(source, filename)
    # a logger's name is a label in the log, not a module anyone imports
    logger_names = {
        id(arg)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and called_name(node) == "getLogger"
        for arg in node.args
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in logger_names:
            name = module_path(node.value)
            if name is not None and names_feature(name):
                found.append(f"{filename}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Call) and called_name(node) in IMPORTERS:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if (
                    isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and module_path(arg.value) is None
                    and names_feature(arg.value)
                ):
                    found.append(f"{filename}:{arg.lineno}: {arg.value!r}")
    return sorted(set(found))


def module_file(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def test_the_core_names_no_feature_package_in_a_string() -> None:
    """importlib.import_module("rules.cli") is an arrow grimp cannot see: the core keeps no such
    string (its lists of features went to the plugin manifests)."""
    core = expand(graph(), CONTRACTS[CORE]["source_modules"])
    found: list[str] = []
    for module in sorted(core):
        path = module_file(module)
        found += feature_strings(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "core modules that name a feature package in a string:\n" + "\n".join(found)


def test_the_string_scan_finds_the_forms_a_feature_list_takes() -> None:
    source = '''
"""Docstring naming drivers.modbus.plugin:PLUGIN in a sentence is prose."""
import importlib
MODULES = ["edge.commands", "rules.cli"]
importlib.import_module("edge.sync.cli")
__import__("drivers")
importlib.util.find_spec(name="rules")
ENTRY = "drivers.modbus.plugin:PLUGIN"
registry().names("drivers")
NOT_A_FEATURE = "edge.store.trendy"
log = logging.getLogger("edge.web")
'''
    assert feature_strings(source, "x.py") == [
        "x.py:4: 'rules.cli'",
        "x.py:5: 'edge.sync.cli'",
        "x.py:6: 'drivers'",
        "x.py:7: 'rules'",
        "x.py:8: 'drivers.modbus.plugin:PLUGIN'",
    ]
