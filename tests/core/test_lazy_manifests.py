"""Reading the plugins' manifests (every `edge` command does) imports none of their code: the
hooks name it (`lazy("pkg.module:function")`) and import it when they run."""

from __future__ import annotations

import json
import subprocess
import sys

from edge.plugins import lazy, lazy_value

CODE = (
    "edge.kpi.component",
    "edge.kpi.api",
    "rules.engine",
    "rules.component",
    "edge.sync.http_sink",
    "edge.sync.component",
)


def test_discovering_the_plugins_imports_none_of_their_code() -> None:
    script = (
        "import json, sys\n"
        "from edge.plugins import registry\n"
        "reg = registry()\n"
        "reg.section_keys()\n"
        f"print(json.dumps(sorted(m for m in {list(CODE)!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == []


def test_a_lazy_hook_runs_the_named_function_and_a_lazy_value_returns_the_named_object() -> None:
    assert lazy("os.path:join")("a", "b") == "a/b"
    from edge.kpi.config import KpiConfig

    assert lazy_value("edge.kpi.config:KpiConfig")() is KpiConfig


def test_discovering_the_plugins_loads_no_distribution_metadata_library() -> None:
    """The entry points are read from the distributions' entry_points.txt: importlib.metadata (and
    the zipfile, csv and importlib.resources it brings) stays out of a gateway that needs none."""
    script = (
        "import json, sys\n"
        "from edge.plugins import registry\n"
        "names = sorted(p.name for p in registry().plugins)\n"
        "heavy = sorted(m for m in ('importlib.metadata', 'zipfile', 'csv') if m in sys.modules)\n"
        "print(json.dumps([names, heavy]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    names, heavy = json.loads(done.stdout)
    assert heavy == []
    assert {"modbus", "rules", "sync", "web-ui"} <= set(names)


def test_the_entry_points_found_are_those_importlib_metadata_finds() -> None:
    from importlib.metadata import entry_points

    from edge.plugins import GROUP, entry_points_of

    for group in (GROUP, "console_scripts"):
        assert entry_points_of(group) == [(ep.name, ep.value) for ep in entry_points(group=group)]
