"""`edge rules import` stores its packs in one transaction, and a running gateway refuses what it
would refuse to save: a gateway looking while the import runs found half a pack and ran it, and a
rule it would have refused (its windows over rules.window_memory_mb) ran once imported from the
command line."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from pathlib import Path

from tests.support.site import running_site

ROOT = Path(__file__).resolve().parents[2]
RULES = 150
SITE = """\
site: {id: import-atomic}
rules: {window_memory_mb: 1}
devices:
  - id: m
    driver: sim
    points:
      - {name: v, signal: constant, value: 0, interval: 1h}
      - {name: fast, signal: constant, value: 0, interval: 50ms}
"""


async def _import(site: str, pack: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge.cli",
        "rules",
        "import",
        "-c",
        site,
        str(pack),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Watcher(threading.Thread):
    """Another reader of the state database: the numbers of imported rules it finds while the
    import runs."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.done = threading.Event()
        self.counts: set[int] = set()

    def run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            while not self.done.is_set():
                self.counts.add(conn.execute("SELECT COUNT(*) FROM rules WHERE id LIKE 'imp%'").fetchone()[0])
        finally:
            conn.close()


async def test_a_pack_is_imported_in_one_transaction(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        pack = tmp_path / "many.yaml"
        pack.write_text(
            "rules:\n"
            + "".join(
                f"  - {{id: imp{i}, when: m.v, if: value > {i}, then: [{{alert: x}}]}}\n"
                for i in range(RULES)
            ),
            encoding="utf-8",
        )
        watcher = Watcher(comp.store.state.path)
        watcher.start()
        try:
            code, out, err = await _import(rt.site.source, pack)
        finally:
            watcher.done.set()
            await asyncio.to_thread(watcher.join, 10)
        assert code == 0, err
        assert out.count("imported imp") == RULES
        assert watcher.counts <= {0, RULES}, sorted(watcher.counts)[:5]
        updated = {s.updated for s in comp.store.list_rules() if s.id.startswith("imp")}
        assert len(updated) == 1  # stored together
        comp.reload_changed()  # or the reload tick did
        assert sum(1 for r in comp.engine.rules if r.startswith("imp")) == RULES


async def test_the_gateway_refuses_what_it_would_not_save(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        pack = tmp_path / "long.yaml"
        pack.write_text(
            "rules:\n"
            "  - {id: short, when: m.v, if: \"avg('m.v', '1h') > 1\", then: [{alert: x}]}\n"
            "  - {id: long, when: m.v, if: \"avg('m.fast', '31d') > 1\", then: [{alert: x}]}\n",
            encoding="utf-8",
        )
        code, _, err = await _import(rt.site.source, pack)
        assert code == 0, err  # the command line does not know the gateway's windows
        comp.reload_changed()  # or the reload tick did
        assert comp._loaded.keys() >= {"long", "short"}
        assert "short" in comp.engine.rules
        assert "long" not in comp.engine.rules
        assert "rules.window_memory_mb" in comp.broken["long"]
        assert ("m.fast", 31 * 86400.0) not in comp.engine.windows
        status = comp.status()
        assert status["window_budget_refusals"] == 1 and status["errors"] == 1
        shown = comp.describe(comp.store.get("long"))
        assert shown["state"] == "error" and "m.fast" in shown["error"]
