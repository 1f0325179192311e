"""A site without Modbus devices never loads pymodbus (nor any other protocol library), and modules
that load a library only one feature needs import it where that feature runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.core.test_lazy_manifests import in_fresh_interpreter
from tests.support.site import site_file

ROOT = Path(__file__).resolve().parents[2]


def test_a_sim_site_loads_no_protocol_library(tmp_path: Path) -> None:
    config = site_file(
        tmp_path,
        "devices:\n  - id: m\n    driver: sim\n    points: [{name: p, signal: sine, interval: 50ms}]\n",
    )
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from edge.config import load_site
        from edge.runtime import Runtime

        async def main():
            rt = Runtime(load_site({str(config)!r}))
            await rt.start()
            await rt.journal.flush()
            await rt.stop()

        asyncio.run(main())
        loaded = sorted(m for m in ("pymodbus", "serial", "bleak", "cv2") if m in sys.modules)
        print("LOADED=" + ",".join(loaded))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED=\n" in proc.stdout, proc.stdout


#: (module, what importing it must not load): each is imported where it is used, so a gateway that
#: never uses it keeps its memory
LAZY = [
    ("edge.clock", "ctypes"),  # adjtimex is looked up at the first clock read
    ("rules.component", "rules.dry_run_worker"),  # only a dry run starts its child
    ("rules.api", "rules.dry_run_worker"),
    ("rules.model", "difflib"),  # only a typo's "did you mean" and a YAML edit need it
    ("edge.api.openapi", "edge.api.openapi_web"),  # the document is built when it is asked for
    ("edge.config", "difflib"),  # only a misspelt profile's check needs it
    # the KPI route is on every site; the fold's code only on a site with `kpi:`, at a request
    ("edge.kpi.api", "edge.kpi.component"),
    ("edge.kpi.api", "edge.kpi.engine"),
    ("edge.kpi.api", "edge.kpi.figures"),
    # the privacy routes and the dead letters are on every site; sealing only on a site with keys
    ("edge.sync.deadletters", "edge.privacy.atrest"),
    ("edge.api.privacy_routes", "edge.privacy.atrest"),
    ("edge.api.privacy_routes", "edge.privacy.component"),
    ("edge.api.privacy_routes", "edge.privacy.report"),
    ("edge.api.privacy_routes", "edge.privacy.subjects"),
]


@pytest.mark.parametrize(("module", "lazy"), LAZY, ids=[f"{m}-{x}" for m, x in LAZY])
def test_importing_a_module_loads_nothing_it_uses_only_on_demand(module: str, lazy: str) -> None:
    script = f"import sys, {module}\nprint({lazy!r} in sys.modules)\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False", f"importing {module} loads {lazy}"


def test_every_site_loads_the_demo_manifest_and_none_of_its_code() -> None:
    """Plugin discovery imports edge.demo.plugin on every site, and with it the edge.demo package:
    the demo's site, command and drivers are in submodules imported when the demo runs."""
    script = textwrap.dedent(
        """
        import inspect, json, sys
        import edge.demo.plugin
        package = vars(sys.modules["edge.demo"])
        code = [n for n, v in package.items() if inspect.isfunction(v)]
        print(json.dumps([sorted(m for m in sys.modules if m.startswith("edge.demo")), code]))
        """
    )
    assert in_fresh_interpreter(script) == [["edge.demo", "edge.demo.plugin"], []]
