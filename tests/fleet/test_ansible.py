"""The Ansible role and playbook (deploy/ansible/) run by the real ansible-playbook against three
gateways on this machine (connection local; each its own prefix, site file, data dir and port):
each is installed from the offline bundle and serves its own site; a second run changes nothing;
a host_vars file that `edge check` refuses stops the rollout at that gateway, the one before it
updated, it on its previous site file, the one after it untouched."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fleet.conftest import START_CMD, STOP_CMD, alive, run_playbook
from tests.support.ports import free_port

HOSTS = ("gw1", "gw2", "gw3")
PACK = """rules:
  - id: p-high
    name: p above 8
    when: "*.p"
    if: value > 8
    then:
      - event: {kind: p_high, severity: info, message: "p is {value}"}
"""


def meter(name: str) -> dict[str, Any]:
    return {
        "id": name,
        "driver": "sim",
        "points": [{"name": "p", "signal": "random", "min": 0, "max": 9, "interval": "200ms"}],
    }


class Fleet:
    def __init__(self, tmp_path: Path, bundle: Path) -> None:
        self.root = tmp_path
        self.inventory = tmp_path / "inventory"
        (self.inventory / "group_vars").mkdir(parents=True)
        (self.inventory / "host_vars").mkdir()
        (tmp_path / "pack.yaml").write_text(PACK)
        self.ports = {h: free_port() for h in HOSTS}
        fmt = {"prefix": "{{ edge_prefix }}", "etc": "{{ edge_etc }}", "data": "{{ edge_data_dir }}"}
        hosts: dict[str, Any] = {"gateways": {"hosts": {h: {} for h in HOSTS}}}
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
        shared = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "edge_bundle": str(bundle),
            "edge_extras": "",
            "edge_python": sys._base_executable,  # type: ignore[attr-defined]
            "edge_service": "none",
            "edge_start_cmd": START_CMD.format(**fmt),
            "edge_stop_cmd": STOP_CMD.format(**fmt),
            "edge_restart_cmd": f"({STOP_CMD.format(**fmt)}); {START_CMD.format(**fmt)}",
            # the same 60 s window as retries 60 of 1 s, tried twice as often: each try that comes
            # before the gateway answers costs less
            "edge_health_retries": 120,
            "edge_health_delay": 0.5,
            "edge_rule_packs": [str(tmp_path / "pack.yaml")],
        }
        (self.inventory / "group_vars" / "gateways.yml").write_text(yaml.safe_dump(shared))
        for h in HOSTS:
            self.host_vars(h, [meter("meter")])

    def dir(self, host: str) -> Path:
        return self.root / host

    def site(self, host: str) -> Path:
        return self.dir(host) / "etc" / "site.yaml"

    def pid_file(self, host: str) -> Path:
        return self.dir(host) / "data" / "edge.pid"

    def host_vars(self, host: str, devices: list[dict[str, Any]], **more: Any) -> None:
        d = self.dir(host)
        doc = {
            "edge_prefix": str(d / "opt"),
            "edge_etc": str(d / "etc"),
            "edge_data_dir": str(d / "data"),
            "edge_site_id": f"site-{host}",
            "edge_site_name": f"gateway {host}",
            "edge_web_listen": f"127.0.0.1:{self.ports[host]}",
            "edge_devices": devices,
            **more,
        }
        (self.inventory / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(doc))

    def play(self) -> tuple[int, str, dict[str, dict[str, int]]]:
        return run_playbook(self.root, self.inventory, timeout=900)


async def healthz(port: int) -> Any:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
        return r.status, await r.json()


@pytest.mark.slow
@pytest.mark.rollout
@pytest.mark.timeout(1500)  # three installs and four rollouts, on a machine others share
def test_rollout_idempotence_and_a_broken_host_stops_it(
    bundle: Path, tmp_path: Path, pid_files: list[Path]
) -> None:
    fleet = Fleet(tmp_path, bundle)
    pid_files.extend(fleet.pid_file(h) for h in HOSTS)

    rc, out, recap = fleet.play()
    assert rc == 0, out
    assert set(recap) == set(HOSTS) and all(r["failed"] == 0 and r["changed"] > 0 for r in recap.values()), (
        out
    )
    for h in HOSTS:
        status, health = asyncio.run(healthz(fleet.ports[h]))
        assert status == 200 and health["site"] == f"site-{h}"  # each serves its own site
        assert (fleet.dir(h) / "etc" / "rules" / "pack.yaml").read_text() == PACK
        assert os.readlink(fleet.dir(h) / "opt" / "current").startswith("versions/")

    pids = {h: int(fleet.pid_file(h).read_text()) for h in HOSTS}
    rc, out, recap = fleet.play()
    assert rc == 0, out
    assert {h: r["changed"] for h, r in recap.items()} == {h: 0 for h in HOSTS}, out
    assert {h: int(fleet.pid_file(h).read_text()) for h in HOSTS} == pids  # nothing restarted

    before = {h: fleet.site(h).read_bytes() for h in HOSTS}
    stamps = {h: fleet.site(h).stat().st_mtime_ns for h in HOSTS}
    fleet.host_vars("gw1", [meter("meter"), meter("meter-2")])
    broken = meter("meter")
    broken["points"][0]["signal"] = "no-such-signal"
    fleet.host_vars("gw2", [broken])
    fleet.host_vars("gw3", [meter("meter"), meter("meter-3")])
    rc, out, recap = fleet.play()
    assert rc != 0, out
    assert "edge check refuses the rendered site file" in out and "no-such-signal" in out, out
    # gw1: updated and restarted, healthy on its new site file
    assert "meter-2" in fleet.site("gw1").read_text()
    assert int(fleet.pid_file("gw1").read_text()) != pids["gw1"]
    assert asyncio.run(healthz(fleet.ports["gw1"]))[0] == 200
    # gw2: stopped at, still on its previous site file and process
    assert recap["gw2"]["failed"] == 1
    assert fleet.site("gw2").read_bytes() == before["gw2"]
    assert int(fleet.pid_file("gw2").read_text()) == pids["gw2"] and alive(pids["gw2"])
    assert asyncio.run(healthz(fleet.ports["gw2"]))[1]["site"] == "site-gw2"
    # gw3: never reached
    assert recap.get("gw3", {}).get("ok", 0) == 0, out
    assert fleet.site("gw3").read_bytes() == before["gw3"]
    assert fleet.site("gw3").stat().st_mtime_ns == stamps["gw3"]
    assert int(fleet.pid_file("gw3").read_text()) == pids["gw3"]

    # a site file edge check accepts but the gateway cannot serve (its port is taken): gw1 fails
    # the health gate, gets its previous site file back, is restarted on it, and the rollout stops.
    # The port is bound, not listened on: the gateway's bind fails all the same, and each try of
    # the gate is refused at once instead of waiting out edge status's timeout on a socket that
    # never answers (6-7 s a try, ten tries)
    fleet.host_vars("gw2", [meter("meter")])
    good = fleet.site("gw1").read_bytes()
    with socket.socket() as busy:
        taken = free_port()
        busy.bind(("127.0.0.1", taken))
        fleet.host_vars(
            "gw1",
            [meter("meter"), meter("meter-2")],
            edge_web_listen=f"127.0.0.1:{taken}",
            edge_health_retries=10,
            edge_health_delay=1,
        )
        rc, out, recap = fleet.play()
    assert rc != 0, out
    assert "gw1 failed its health gate and is back on its previous site file (healthy again)" in out, out
    assert set(recap) == {"gw1"}, out
    assert fleet.site("gw1").read_bytes() == good
    status, health = asyncio.run(healthz(fleet.ports["gw1"]))
    assert status == 200 and health["site"] == "site-gw1"
    assert fleet.site("gw2").read_bytes() == before["gw2"]
