"""`edge demo` reloads as `edge run` does: a SIGHUP with a site file that `edge check` refuses (here
a rule pack that does not compile) changes nothing and says why. The demo is where a newcomer
learns how a reload behaves; it used to apply such a file without a word."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml

from edge.config import load_site
from edge.store import space
from tests.core.test_demo_modbus import edge_demo
from tests.support.cli import edge_cli
from tests.support.waiting import until_sync

BROKEN_PACK = """\
rules:
  - id: broken-one
    when: meter-main.voltage_a
    if: value > > 3
    then:
      - alert: x
"""


def test_the_demo_refuses_a_reload_that_edge_check_refuses(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    log = tmp_path / "demo.log"  # edge_demo's
    with edge_demo(data):
        site = data / "site.yaml"
        status = space.read_status(load_site(str(site)).storage.path)
        assert status is not None, "the demo's journal writer publishes its pid"
        pack = tmp_path / "broken-pack.yaml"
        pack.write_text(BROKEN_PACK, encoding="utf-8")
        doc = yaml.safe_load(site.read_text(encoding="utf-8"))
        doc["rules"]["packs"].append(str(pack))
        site.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
        checked = edge_cli("check", "-q", "-c", str(site))
        assert checked.returncode == 1 and "broken-pack.yaml" in checked.stdout + checked.stderr
        os.kill(status["pid"], signal.SIGHUP)
        until_sync(
            lambda: "reload refused" in log.read_text(encoding="utf-8"),
            timeout=30,
            what="the demo refusing the reload",
        )
    out = log.read_text(encoding="utf-8")
    assert "reload refused: the site file has errors; nothing changed" in out, out[-3000:]
    assert "site file reloaded" not in out, out[-3000:]
