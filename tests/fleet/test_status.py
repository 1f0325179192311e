"""`edge status` against a real gateway: what the rollout's health gate reads (`--json`: healthy,
devices_started, crash_looping), the version and the config and rules hashes (a whitespace-only
edit of the site file keeps the config hash, a changed value does not, a stored rule changes the
rules hash), the exit codes, and "not running" when nothing answers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml

from edge import __version__, buildinfo
from edge.api.tokens import create_token
from edge.config import load_site
from edge.driver import DeviceConfig
from edge.runtime import CRASH_LOOP_WINDOW, DriverSlot
from edge.service import reload
from edge.status_cli import HEALTHY, NOT_RUNNING, UNHEALTHY, UNREADABLE
from rules.component import RulesComponent
from tests.core.test_sim import _beside_a_steady_device
from tests.support.cli import answering, edge_cli, start_edge_run
from tests.support.ports import free_port
from tests.support.procs import stop_process
from tests.support.site import running_site, site_file
from tests.support.waiting import until_sync

STEADY = {"id": "steady", "driver": "sim", "points": [{"name": "v", "signal": "constant", "value": 2}]}
RULE = {"id": "hot", "when": "steady.v", "if": "value > 100", "then": [{"event": {"kind": "hot"}}]}


def status(config: Path, *more: str) -> tuple[int, dict[str, Any]]:
    done = edge_cli("status", "-c", str(config), "--json", *more)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


async def test_status_of_a_running_gateway_and_its_hashes(tmp_path: Path) -> None:
    port = free_port()
    doc = {"devices": [STEADY], "web": {"listen": f"127.0.0.1:{port}"}}
    config = site_file(tmp_path, doc)
    code, report = await asyncio.to_thread(status, config)
    assert (code, report["running"]) == (NOT_RUNNING, False)
    human = await asyncio.to_thread(edge_cli, "status", "-c", str(config))
    assert human.returncode == NOT_RUNNING and "NOT RUNNING" in human.stdout

    async with running_site(tmp_path, doc) as rt:
        token_file = tmp_path / "status.token"
        token_file.write_text(create_token(rt.state, "status", ["read"]) + "\n")
        code, report = await asyncio.to_thread(status, config, "--token-file", str(token_file))
        assert code == HEALTHY, report
        assert report["healthy"] is True and report["devices_started"] is True
        assert report["crash_looping"] == [] and report["ready"] is True
        assert report["version"] == __version__
        assert report["config_hash"] == buildinfo.config_hash(load_site(config).raw)
        assert report["rules_hash"] == buildinfo.NO_RULES
        assert report["clock"]["trusted"] in (True, False)

        # a rule stored through the engine changes the rules hash
        rules = rt.component(RulesComponent)
        assert rules is not None
        rules.put(RULE, "test")
        code, after = await asyncio.to_thread(status, config, "--token-file", str(token_file))
        assert after["rules_hash"] != buildinfo.NO_RULES
        assert after["rules_hash"] == buildinfo.rules_hash(rules.rule_documents())

        # a reload that applies the whole new file moves the config hash to the new file's
        reloaded = {**doc, "devices": [{**STEADY, "points": [{**STEADY["points"][0], "value": 3}]}]}  # type: ignore[dict-item]
        assert await reload(rt, str(site_file(tmp_path, reloaded))) == []
        code, moved = await asyncio.to_thread(status, config, "--token-file", str(token_file))
        assert moved["config_hash"] == buildinfo.config_hash(load_site(config).raw) != report["config_hash"]
        site_file(tmp_path, doc)  # back to the file the rest of the test hashes
        assert await reload(rt, str(config)) == []

        # the token from the environment; human output
        env = {"EDGE_TOKEN": token_file.read_text().strip(), "PATH": "/usr/bin:/bin"}
        done = await asyncio.to_thread(edge_cli, "status", "-c", str(config), env=env)
        assert done.returncode == HEALTHY and "healthy" in done.stdout, done.stdout + done.stderr
        assert f"config hash {report['config_hash']}" in done.stdout
        assert "restart needed" not in done.stdout

        # a reload whose change only a restart applies: the human output names its keys
        await reload(rt, str(site_file(tmp_path, {**doc, "clock": {"trust_unsynced": False}}, "later.yaml")))
        done = await asyncio.to_thread(edge_cli, "status", "-c", str(config), env=env)
        assert "! restart needed for clock" in done.stdout, done.stdout + done.stderr
        assert await reload(rt, str(config)) == []

        # no token: /healthz only; a refused token: running, status unreadable
        code, limited = await asyncio.to_thread(status, config)
        assert (code, limited["detail"], limited["healthy"]) == (HEALTHY, False, True)
        assert limited["site"] == report["site"]  # one shape for a script, token or not
        (tmp_path / "bad.token").write_text("edge_not-a-token\n")
        code, refused = await asyncio.to_thread(status, config, "--token-file", str(tmp_path / "bad.token"))
        assert code == UNREADABLE and "401" in refused["problem"], refused

    # whitespace, comments and key order do not change the config hash; a value does
    data = yaml.safe_load(config.read_text())
    reordered = tmp_path / "reordered.yaml"
    reordered.write_text("# the same site\n\n" + yaml.safe_dump(dict(reversed(data.items())), indent=4))
    assert buildinfo.config_hash(load_site(reordered).raw) == report["config_hash"]
    data["site"]["name"] = "renamed"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data))
    assert buildinfo.config_hash(load_site(changed).raw) != report["config_hash"]


def test_a_crash_loop_is_three_restarts_within_ten_minutes() -> None:
    slot = DriverSlot(config=DeviceConfig.model_validate({"id": "d", "driver": "sim"}))
    slot.restart_times.extend([100.0, 200.0])
    assert not slot.crash_looping(300.0)  # two restarts
    slot.restart_times.append(300.0)
    assert slot.crash_looping(300.0) and slot.crash_looping(100.0 + CRASH_LOOP_WINDOW)
    assert not slot.crash_looping(100.0 + CRASH_LOOP_WINDOW + 1)  # the first one is too old
    slot.restart_times.append(800.0)  # only the last three count
    assert slot.crash_looping(100.0 + CRASH_LOOP_WINDOW + 1)


def test_a_crash_looping_driver_makes_edge_run_unhealthy(tmp_path: Path) -> None:
    port = free_port()
    doc = yaml.safe_load(_beside_a_steady_device("crashy", "{type: crash, every: 1h, first_after: 50ms}"))
    doc["web"] = {"listen": f"127.0.0.1:{port}"}
    config = site_file(tmp_path, doc)
    token = edge_cli("tokens", "create", "-c", str(config), "status")
    assert token.returncode == 0, token.stderr
    token_file = tmp_path / "status.token"
    token_file.write_text(token.stdout.strip().splitlines()[-1] + "\n")
    log_path = tmp_path / "edge.log"
    proc = start_edge_run(config, log_path)
    try:
        asyncio.run(answering(f"http://127.0.0.1:{port}", proc))
        assert proc.poll() is None, log_path.read_text()

        def looping() -> tuple[int, dict[str, Any]] | None:
            code, report = status(config, "--token-file", str(token_file))
            return (code, report) if report.get("crash_looping") else None

        # restarts after 1, 2 and 4 s of backoff: the third within about 8 s
        found = until_sync(looping, timeout=60, interval=0.5, what="crashy crash looping")
        assert found is not None
        code, report = found
        assert code == UNHEALTHY and report["healthy"] is False
        assert report["crash_looping"] == ["crashy"] and report["devices_started"] is True
        human = edge_cli("status", "-c", str(config), "--token-file", str(token_file))
        assert human.returncode == UNHEALTHY and "crash looping: crashy" in human.stdout
    finally:
        stop_process(proc)
    code, report = status(config, "--token-file", str(token_file))
    assert code == NOT_RUNNING and "not running" in report["problem"]
