"""A site without Modbus devices never loads pymodbus (nor any other protocol library)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
