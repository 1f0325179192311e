"""`edge run` as a real process: systemd notifications, SIGTERM, SIGHUP reload."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import ROOT, edge_cli
from tests.support.procs import stop_process, terminate
from tests.support.site import site_file
from tests.support.waiting import until_sync

SITE: dict[str, Any] = {
    "devices": [
        {
            "id": "meter",
            "driver": "sim",
            "points": [
                {"name": "power", "signal": "sine", "min": 1, "max": 5, "period": "1m", "interval": "20ms"}
            ],
        }
    ]
}


class NotifySocket:
    """A unix datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def close(self) -> None:
        self.sock.close()


def _start(config: Path, env: dict[str, str], **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(config)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def _records(db: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, point, kind FROM journal ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.fixture
def notify(tmp_path: Path):
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


def test_ready_status_watchdog_then_sigterm_flushes_and_exits(tmp_path: Path, notify: NotifySocket) -> None:
    config = site_file(tmp_path, SITE)
    proc = _start(config, {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"})
    try:
        until_sync(lambda: any("READY=1" in m for m in notify.poll()), timeout=30, what="READY=1")
        until_sync(
            lambda: sum("WATCHDOG=1" in m for m in notify.poll()) >= 3, timeout=10, what="watchdog pings"
        )
        assert any(m.startswith("STATUS=") and "1 online" in m for m in notify.poll()), notify.messages
        until_sync(lambda: len(_records(tmp_path / "edge.db")) > 20, what="readings committed")
        out = terminate(proc)  # a hang on SIGTERM is killed and fails the return code
    finally:
        stop_process(proc)
    assert proc.returncode == 0, out
    assert any("STOPPING=1" in m for m in notify.poll())
    records = _records(tmp_path / "edge.db")
    assert records[-1][2] == "gateway_stopped"  # the final flush reached the disk
    assert "level=info logger=edge.service msg=stopped" in out
    seqs = [r[0] for r in records]
    assert seqs == list(range(1, len(seqs) + 1))


def test_sighup_applies_device_changes_and_refuses_a_broken_file(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = site_file(tmp_path, SITE)
    proc = _start(config, {"NOTIFY_SOCKET": str(notify.path)})

    def readies() -> int:  # READY=1 at start and again after each reload
        return sum("READY=1" in m for m in notify.poll())

    try:
        until_sync(lambda: readies() >= 1, timeout=30, what="READY=1")
        data = yaml.safe_load(config.read_text())
        data["devices"].append(
            {
                "id": "bin-1",
                "driver": "sim",
                "points": [{"name": "fill_pct", "signal": "ramp", "interval": "20ms"}],
            }
        )
        data["web"]["listen"] = "127.0.0.1:0"
        config.write_text(yaml.safe_dump(data))
        proc.send_signal(signal.SIGHUP)
        until_sync(
            lambda: any(r[1] == "bin-1.fill_pct" for r in _records(tmp_path / "edge.db")),
            what="new device reporting",
        )
        until_sync(lambda: readies() >= 2, timeout=30, what="READY=1 after the first reload")
        # a broken file changes nothing: the running devices keep reporting
        config.write_text("site: {id: BROKEN}\ndevices: [{id: x}]\n")
        proc.send_signal(signal.SIGHUP)
        # the refusal is logged before READY=1 comes again (SIGTERM earlier could beat the reload)
        until_sync(lambda: readies() >= 3, timeout=30, what="READY=1 after the refused reload")
        n = len(_records(tmp_path / "edge.db"))
        until_sync(
            lambda: len(_records(tmp_path / "edge.db")) > n + 20, what="still running after a bad reload"
        )
        out = terminate(proc)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, out
    assert "reload refused: the site file has errors; nothing changed" in out
    assert "invalid site id 'BROKEN'" in out
    assert 'msg="site file reloaded"' in out and "added=bin-1" in out


def test_run_with_a_broken_file_exits_1_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: ok}\nstorage: {durability: sometimes}\n")
    proc = edge_cli("run", "-c", str(bad))
    assert proc.returncode == 1
    assert "bad.yaml:2: storage.durability" in proc.stderr
    assert not (tmp_path / "edge.db").exists()


def test_a_web_port_in_use_is_a_clear_error_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = site_file(tmp_path, {"web": {"listen": f"127.0.0.1:{port}"}, **SITE})
        proc = edge_cli("run", "-c", str(config))
    assert proc.returncode == 1
    assert f"the web server cannot listen on 127.0.0.1:{port}" in proc.stdout
    assert "change web.listen" in proc.stdout and "Traceback" not in proc.stdout


async def test_a_reload_applies_live_sections_and_names_the_ones_that_need_a_restart(tmp_path: Path) -> None:
    """Which plugin sections a reload applies comes from the plugins (`live_sections`, `live_keys`):
    `rules:` in part (its packs are imported at a start, so `rules.packs` waits for one);
    `modbus_server:` (nothing live) is named for a restart."""
    from edge.config import load_site
    from edge.runtime import Runtime
    from edge.service import reload
    from tests.support.ports import free_port

    (tmp_path / "a.yaml").write_text("rules: []\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("rules: []\n", encoding="utf-8")
    data = {
        **SITE,
        "rules": {"packs": ["a.yaml"]},
        "modbus_server": {
            "listen": f"127.0.0.1:{free_port()}",
            "points": [{"point": "meter.power", "address": 0, "type": "float32"}],
        },
    }
    config = site_file(tmp_path, data)
    rt = Runtime(load_site(config), with_web=False)
    await rt.start()
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["rules"] = {"packs": ["b.yaml"]}
        data["modbus_server"]["points"][0]["address"] = 10
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        assert await reload(rt, str(config)) == ["modbus_server", "rules.packs"]
        assert list(rt.site.sections["rules"].packs) == ["a.yaml"]  # type: ignore[attr-defined]
    finally:
        await rt.stop()


async def test_a_reload_names_a_changed_section_of_any_plugin(tmp_path: Path) -> None:
    """A section of a plugin the core has never heard of is held to a restart too."""
    from pydantic import BaseModel

    from edge import plugins
    from edge.config import load_site
    from edge.runtime import Runtime
    from edge.service import reload

    class Lights(BaseModel):
        level: int

    extra = plugins.Plugin(name="lights", sections={"lights": lambda: Lights})
    plugins.use([*plugins.registry().plugins, extra])
    try:
        config = site_file(tmp_path, {**SITE, "lights": {"level": 1}})
        rt = Runtime(load_site(config), with_web=False)
        await rt.start()
        try:
            data = yaml.safe_load(config.read_text(encoding="utf-8"))
            data["lights"]["level"] = 2
            config.write_text(yaml.safe_dump(data), encoding="utf-8")
            assert await reload(rt, str(config)) == ["lights"]
        finally:
            await rt.stop()
    finally:
        plugins.use(None)
