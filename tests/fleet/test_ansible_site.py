"""The Ansible role (deploy/ansible/) on one gateway of this machine, run by the real
ansible-playbook (connection local) with no bundle: the role uses the edge already in its prefix
(a link to this checkout's venv), so each case costs a few plays, not an install. A changed rule
pack is in force after the rollout that brings it, and the gateway itself warns when a pack it
reads at start differs from the stored rule it keeps; `edge_site_extra` adds to the rendered
sections without losing storage.path or web.listen, and one that changes site.id or storage.path
is refused with nothing changed; the targets file the role writes for Prometheus is one the
shipped scrape config reads, and its token command is one `edge` takes."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from edge.api.tokens import create_token, list_tokens
from edge.state import StateDB
from rules.store import RuleStore
from tests.fleet.conftest import PLAYBOOK, ROOT, alive, run_playbook, stop_pid_file
from tests.support.ports import free_port
from tests.support.procs import stop_process
from tests.support.site import running_site, site_file
from tests.support.tools import require_tool
from tests.support.waiting import until_async
from tests.sync.test_prometheus import query, start_prometheus

HOST = "gw1"


def pack(threshold: int) -> str:
    return f"""rules:
  - id: p-high
    name: p above {threshold}
    when: "*.p"
    if: value > {threshold}
    then:
      - event: {{kind: p_high, severity: info, message: "p is {{value}}"}}
"""


# the gateway started and stopped as the role's edge_start_cmd / edge_stop_cmd do it without
# systemd (the checkout's venv: no bytecode cache of the unit's own)
START = 'nohup "{prefix}/.venv/bin/edge" run -c "{etc}/site.yaml" >> "{data}/run.log" 2>&1 & echo $! > "{data}/edge.pid"'
STOP = (
    'p=$(cat "{data}/edge.pid" 2>/dev/null) || exit 0; kill "$p" 2>/dev/null || exit 0; '
    'while [ -d /proc/$p ] && [ "$(cut -d" " -f3 /proc/$p/stat 2>/dev/null)" != Z ]; do sleep 0.1; done'
)


class Gateway:
    """One gateway of an inventory of its own under `root`: prefix, site file and data dir there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = root / "opt"
        self.etc = root / "etc"
        self.data = root / "data"
        self.prefix.mkdir()
        (self.prefix / ".venv").symlink_to(ROOT / ".venv")
        self.inventory = root / "inventory"
        (self.inventory / "group_vars").mkdir(parents=True)
        (self.inventory / "host_vars").mkdir()
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump({"gateways": {"hosts": {HOST: {}}}}))
        self.port = free_port()
        self.pack = root / "pack.yaml"
        self.pack.write_text(pack(8))

    @property
    def pid_file(self) -> Path:
        return self.data / "edge.pid"

    @property
    def site(self) -> Path:
        return self.etc / "site.yaml"

    def vars(self, **more: Any) -> None:
        fmt = {"prefix": "{{ edge_prefix }}", "etc": "{{ edge_etc }}", "data": "{{ edge_data_dir }}"}
        doc = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "edge_bundle": "",
            "edge_service": "none",
            "edge_start_cmd": START.format(**fmt),
            "edge_stop_cmd": STOP.format(**fmt),
            "edge_restart_cmd": f"({STOP.format(**fmt)}); {START.format(**fmt)}",
            # the same 60 s window as retries 60 of 1 s, tried twice as often: each try that comes
            # before the gateway answers costs less
            "edge_health_retries": 120,
            "edge_health_delay": 0.5,
            "edge_prefix": str(self.prefix),
            "edge_etc": str(self.etc),
            "edge_data_dir": str(self.data),
            "edge_site_id": "site-gw1",
            "edge_web_listen": f"127.0.0.1:{self.port}",
            "edge_devices": [
                {
                    "id": "meter",
                    "driver": "sim",
                    "points": [{"name": "p", "signal": "random", "min": 0, "max": 9, "interval": "200ms"}],
                }
            ],
            "edge_rule_packs": [str(self.pack)],
            **more,
        }
        (self.inventory / "host_vars" / f"{HOST}.yml").write_text(yaml.safe_dump(doc))

    def play(self) -> tuple[int, str, dict[str, int]]:
        code, out, recaps = run_playbook(self.root, self.inventory, timeout=300)
        return code, out, recaps.get(HOST, {})

    def stored_rule(self, rule_id: str) -> tuple[str, int]:
        state = StateDB(str(self.data / "state.db"))
        try:
            stored = RuleStore(state).get(rule_id)
        finally:
            state.close()
        assert stored is not None
        return stored.doc["if"], stored.version

    def rule_in_force(self, rule_id: str) -> tuple[str, int]:
        """The rule as the running gateway's API gives it (it loads what was imported first)."""
        state = StateDB(str(self.data / "state.db"))
        try:
            token = create_token(state, "test", ["read"])
        finally:
            state.close()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/rules/{rule_id}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            body = json.load(r)
        return body["rule"]["if"], body["version"]


@pytest.fixture
def gateway(tmp_path: Path) -> Any:
    gw = Gateway(tmp_path)
    yield gw
    stop_pid_file(gw.pid_file)


@pytest.mark.timeout(600)
def test_a_changed_rule_pack_is_in_force_after_the_rollout(gateway: Gateway) -> None:
    gateway.vars()
    rc, out, recap = gateway.play()
    assert rc == 0 and recap["failed"] == 0, out
    assert gateway.stored_rule("p-high") == ("value > 8", 1)
    first = int(gateway.pid_file.read_text())

    gateway.pack.write_text(pack(3))  # the operator changes the threshold in the pack
    rc, out, recap = gateway.play()
    assert rc == 0 and recap["failed"] == 0, out
    assert (gateway.etc / "rules" / "pack.yaml").read_text() == pack(3)
    # imported: the pack's version is the one stored and the one the gateway runs, no restart
    assert gateway.stored_rule("p-high") == ("value > 3", 2)
    pid = int(gateway.pid_file.read_text())
    assert pid == first and alive(pid)
    assert gateway.rule_in_force("p-high") == ("value > 3", 2)
    # a restart (a changed site file) keeps it, and the gateway has nothing to warn about
    gateway.vars(edge_site_name="renamed")
    rc, out, recap = gateway.play()
    assert rc == 0 and recap["failed"] == 0, out
    pid = int(gateway.pid_file.read_text())
    assert pid != first and alive(pid)
    assert gateway.rule_in_force("p-high") == ("value > 3", 2)
    assert "differs from its stored version" not in (gateway.data / "run.log").read_text()

    rc, out, recap = gateway.play()  # nothing changed: nothing imported, nothing restarted
    assert rc == 0 and recap["changed"] == 0, out
    assert gateway.stored_rule("p-high") == ("value > 3", 2)
    assert int(gateway.pid_file.read_text()) == pid


async def test_the_gateway_warns_once_when_a_pack_differs_from_the_rule_it_keeps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "rules").mkdir()
    pack_file = tmp_path / "rules" / "pack.yaml"
    pack_file.write_text(pack(8))
    doc = {"rules": {"packs": ["rules/pack.yaml"]}}
    async with running_site(tmp_path, doc, web=False) as rt:
        assert rt.components["rules"].store.get("p-high").doc["if"] == "value > 8"
    pack_file.write_text(pack(3))  # changed after its import
    caplog.set_level(logging.WARNING, logger="rules")
    async with running_site(tmp_path, doc, web=False) as rt:
        assert rt.components["rules"].store.get("p-high").doc["if"] == "value > 8"  # kept, as documented
        warnings = [
            r.getMessage() for r in caplog.records if "differs from its stored version" in r.getMessage()
        ]
    assert len(warnings) == 1, warnings
    site = str(tmp_path / "site.yaml")
    assert warnings[0].startswith("rule p-high in pack rules/pack.yaml differs from its stored version 1"), (
        warnings
    )
    assert f"edge rules import -c {site} {pack_file}" in warnings[0], warnings
    caplog.clear()
    async with running_site(tmp_path, doc, web=False):  # each start says it again
        pass
    assert sum("differs from its stored version" in r.getMessage() for r in caplog.records) == 1
    pack_file.write_text(pack(8))  # the same again: nothing to say
    caplog.clear()
    async with running_site(tmp_path, doc, web=False):
        pass
    assert not [r for r in caplog.records if "differs from its stored version" in r.getMessage()]


def healthz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        body: dict[str, Any] = json.load(r)
    return body


@pytest.mark.timeout(600)
def test_site_extra_merges_into_the_rendered_sections_and_may_not_move_the_journal(gateway: Gateway) -> None:
    gateway.vars()
    rc, out, recap = gateway.play()
    assert rc == 0 and recap["failed"] == 0, out
    journal = str(gateway.data / "edge.db")

    # more storage: and web: keys: merged into the rendered sections, path and listen kept
    gateway.vars(edge_site_extra={"storage": {"max_bytes": "512MiB"}, "web": {"enabled": True}})
    rc, out, recap = gateway.play()
    assert rc == 0 and recap["failed"] == 0, out
    site = yaml.safe_load(gateway.site.read_text())
    assert site["storage"] == {"path": journal, "max_bytes": "512MiB"}
    assert site["web"] == {"listen": f"127.0.0.1:{gateway.port}", "enabled": True}
    assert healthz(gateway.port)["site"] == "site-gw1"  # on its own port, its own journal
    pid = int(gateway.pid_file.read_text())
    before = gateway.site.read_bytes()

    # a storage.path or site.id of another: refused, nothing changed, nothing restarted
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"edge_site_extra": {"storage": {"path": str(gateway.root / "new.db")}}},
            "edge_site_extra sets storage.path",
        ),
        ({"edge_storage": {"path": str(gateway.root / "new.db")}}, "edge_storage sets storage.path"),
        ({"edge_site_extra": {"site": {"id": "another"}}}, 'edge_site_extra sets site.id to "another"'),
    ]
    for more, said in cases:
        gateway.vars(**more)
        rc, out, recap = gateway.play()
        assert rc != 0 and recap["failed"] == 1, out
        assert said in out and "Nothing was changed on the gateway" in out, out
        assert gateway.site.read_bytes() == before
        assert int(gateway.pid_file.read_text()) == pid and alive(pid)
    assert not (gateway.root / "new.db").exists()

    # the same site id and journal path spelt out: accepted, nothing to change
    gateway.vars(
        edge_site_extra={
            "storage": {"max_bytes": "512MiB", "path": journal},
            "web": {"enabled": True},
            "site": {"id": "site-gw1"},
        }
    )
    rc, out, recap = gateway.play()
    assert rc == 0 and recap["changed"] == 0, out


@pytest.mark.timeout(600)
def test_the_role_writes_the_prometheus_targets_file_the_shipped_config_reads(gateway: Gateway) -> None:
    targets = gateway.root / "prometheus" / "targets"
    gateway.vars(
        ansible_host="127.0.0.1",
        edge_prometheus_host="localhost",
        edge_prometheus_targets_dir=str(targets),
        edge_prometheus_labels={"group": "north"},
    )
    rc, out, recap = gateway.play()
    assert rc == 0 and recap["failed"] == 0, out
    written = yaml.safe_load((targets / f"{HOST}.yml").read_text())
    assert written == [
        {"targets": [f"127.0.0.1:{gateway.port}"], "labels": {"site": "site-gw1", "group": "north"}}
    ]

    # Prometheus with the shipped scrape config, pointed at this folder, scrapes the gateway
    prometheus = require_tool("prometheus", "Debian package prometheus")
    state = StateDB(str(gateway.data / "state.db"))
    try:
        token = create_token(state, "prometheus", ["read"])
    finally:
        state.close()
    token_file = gateway.root / "prometheus" / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = []
    job = config["scrape_configs"][0]
    job["authorization"]["credentials_file"] = str(token_file)
    job["scrape_timeout"] = "1s"
    job["file_sd_configs"][0]["files"] = [str(targets / "*.yml")]
    config_path = gateway.root / "prometheus" / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = gateway.root / "prometheus" / "prometheus.log"
    port = free_port()
    server = start_prometheus(prometheus, config_path, port, log_path)
    try:
        up = asyncio.run(scraped_up(f"http://127.0.0.1:{port}", server))
        assert server.poll() is None, log_path.read_text()[-3000:]
    finally:
        stop_process(server)
    assert [(s["metric"]["instance"], s["metric"]["site"], s["metric"]["group"]) for s in up] == [
        (f"127.0.0.1:{gateway.port}", "site-gw1", "north")
    ]

    rc, out, recap = gateway.play()  # the same inventory: the file is not written again
    assert rc == 0 and recap["changed"] == 0, out


async def scraped_up(api: str, server: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    """`up` of the community-edge job once Prometheus has scraped a target successfully."""
    async with aiohttp.ClientSession() as http:

        async def scraped() -> bool:
            if server.poll() is not None:
                return True  # exited: the caller shows its log
            try:
                found = await query(http, api, 'up{job="community-edge"} == 1')
            except aiohttp.ClientError:
                return False  # not listening yet
            return bool(found)

        await until_async(scraped, timeout=60, what="Prometheus scraping the gateway")
        return [] if server.poll() is not None else await query(http, api, 'up{job="community-edge"}')


def test_the_scrape_config_gives_a_token_command_that_edge_takes(tmp_path: Path) -> None:
    """The `edge tokens create` line in prometheus.yml's comment, run against a site of the test's."""
    text = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    (line,) = [ln.lstrip("# ").strip() for ln in text.splitlines() if "edge tokens create" in ln]
    site = site_file(tmp_path, {"devices": []})
    argv = [str(ROOT / ".venv" / "bin" / "edge"), *line.split()[1:]]
    argv[argv.index("-c") + 1] = str(site)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    state = StateDB(str(tmp_path / "state.db"))
    try:
        tokens = [(t["name"], t["scopes"]) for t in list_tokens(state)]
    finally:
        state.close()
    assert tokens == [("prometheus", ["read"])]


@pytest.mark.root  # giving a file a group one is not in
@pytest.mark.timeout(600)
def test_the_live_site_file_is_readable_by_the_service_users_group(gateway: Gateway) -> None:
    """A first install has no site file to inherit a group from: the role gives the staged and the
    live file the service user's group (0640), or the service could not read its own site file.
    `daemon` stands in for the service user (a user and a group of that name on Debian)."""
    import grp

    gid = grp.getgrnam("daemon").gr_gid
    gateway.vars(edge_user="daemon", edge_rule_packs=[])  # no pack: nothing runs as that user
    code, out, _ = gateway.play()
    assert code == 0, out[-3000:]
    for path in (gateway.site, gateway.etc / ".staged" / "site.yaml"):
        st = path.stat()
        assert st.st_gid == gid and st.st_mode & 0o777 == 0o640, (path, st)


def test_no_task_before_the_install_needs_the_service_users_group() -> None:
    """On a fresh box the service's user and group are made by install.sh, in the install block:
    a task before it that sets `group: edge_user` fails the first rollout ("chgrp failed: failed
    to look up group community-edge"). Read from the role's task list."""
    tasks = yaml.safe_load((PLAYBOOK.parent / "roles" / "edge" / "tasks" / "main.yml").read_text())
    names = [t.get("name", "") for t in tasks]
    install = next(i for i, n in enumerate(names) if n.startswith("Install or upgrade"))
    before = tasks[:install]
    assert [t["name"] for t in before if "edge_user" in yaml.safe_dump(t)] == []
    after = yaml.safe_dump(tasks[install + 1 :])
    assert "edge_user" in after  # the group is still given, after the install
