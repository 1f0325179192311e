"""Reading the plugins' manifests (every `edge` command does) imports none of their code: the
hooks name it (`lazy("pkg.module:function")`) and import it when they run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge.plugins import lazy, lazy_value

CODE = (
    "edge.kpi.component",
    "edge.kpi.api",
    "rules.engine",
    "rules.component",
    "edge.sync.http_sink",
    "edge.sync.component",
)


def in_fresh_interpreter(script: str, env: dict[str, str] | None = None) -> Any:
    """What `script` prints as JSON, run by a new interpreter (nothing imported yet)."""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True, env=env
    )
    return json.loads(done.stdout)


def test_discovering_the_plugins_imports_none_of_their_code() -> None:
    script = (
        "import json, sys\n"
        "from edge.plugins import registry\n"
        "reg = registry()\n"
        "reg.section_keys()\n"
        f"print(json.dumps(sorted(m for m in {list(CODE)!r} if m in sys.modules)))\n"
    )
    assert in_fresh_interpreter(script) == []


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
    names, heavy = in_fresh_interpreter(script)
    assert heavy == []
    assert {"modbus", "rules", "sync", "web-ui"} <= set(names)


def test_the_entry_points_found_are_those_importlib_metadata_finds() -> None:
    from importlib.metadata import entry_points

    from edge.plugins import GROUP, entry_points_of

    for group in (GROUP, "console_scripts"):
        assert entry_points_of(group) == [(ep.name, ep.value) for ep in entry_points(group=group)]


def test_pydantic_builds_models_without_the_metadata_library_when_no_pydantic_plugin_is_installed() -> None:
    script = (
        "import json, sys\n"
        "import edge.plugins\n"
        "from edge.validation import Strict\n"
        "class M(Strict):\n"
        "    n: int\n"
        "assert M.model_validate({'n': 1}).n == 1\n"
        "print(json.dumps('importlib.metadata' in sys.modules))\n"
    )
    assert in_fresh_interpreter(script) is False


def test_what_pydantic_asks_of_its_plugin_loader_is_in_the_one_put_in_its_place() -> None:
    """A later pydantic that asks its loader for more than get_plugins must not meet the stand-in
    unprepared: every name pydantic's own modules import from it is there."""
    import pydantic

    from edge.plugins import PYDANTIC_LOADER

    asked: set[str] = set()
    for source in Path(pydantic.__file__).parent.rglob("*.py"):
        for found in re.finditer(r"from \S*_loader import ([\w, ]+)", source.read_text(encoding="utf-8")):
            asked |= {name.strip() for name in found.group(1).split(",")}
    assert "get_plugins" in asked
    script = (
        "import json, sys\n"
        "import edge.plugins\n"
        f"print(json.dumps(sorted(dir(sys.modules[{PYDANTIC_LOADER!r}]))))\n"
    )
    assert asked <= set(in_fresh_interpreter(script))


def test_an_installed_pydantic_plugin_is_found_by_pydantic_as_before(tmp_path: Path) -> None:
    dist = tmp_path / "probe_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pydantic]\nprobe = probe_plugin:plugin\n")
    (tmp_path / "probe_plugin.py").write_text(
        "seen = []\n"
        "class Probe:\n"
        "    def new_schema_validator(self, schema, schema_type, path, kind, config, settings):\n"
        "        seen.append(path.name)\n"
        "        return None, None, None\n"
        "plugin = Probe()\n"
    )
    script = (
        "import json, sys\n"
        "import edge.plugins\n"
        "from pydantic import BaseModel\n"
        "class Probed(BaseModel):\n"
        "    n: int = 0\n"
        "import probe_plugin\n"
        "print(json.dumps(probe_plugin.seen))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    assert "Probed" in in_fresh_interpreter(script, env)


def test_entry_points_are_read_as_importlib_metadata_reads_them(tmp_path: Path) -> None:
    """Comments, extras, and two copies of one distribution on the path (the first one counts)."""
    first, second = tmp_path / "first", tmp_path / "second"
    for root, dist, body in (
        (
            first,
            "Probe_Dist-2.0.dist-info",
            "# a comment\n[probe.group]\none = mod.a:obj [extra]\ntwo=mod.b\n",
        ),
        (second, "probe.dist-1.0.dist-info", "[probe.group]\nshadowed = mod.c:obj\n"),
        (second, "other-1.0.egg-info", "[probe.group]\nthree = mod.d:obj.attr\n[other]\nx = y\n"),
    ):
        (root / dist).mkdir(parents=True)
        (root / dist / "entry_points.txt").write_text(body)
    script = (
        "import json\n"
        "from importlib.metadata import entry_points\n"
        "from edge.plugins import entry_points_of\n"
        "ours = entry_points_of('probe.group')\n"
        "theirs = [[ep.name, ep.value] for ep in entry_points(group='probe.group')]\n"
        "print(json.dumps([ours, theirs]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(first), str(second)])}
    ours, theirs = in_fresh_interpreter(script, env)
    assert ours == theirs
    assert [name for name, _ in ours] == ["one", "two", "three"]
