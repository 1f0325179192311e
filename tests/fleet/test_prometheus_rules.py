"""deploy/prometheus: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), every family they name is one a gateway's /metrics really exports, and
Debian's Prometheus, run with the shipped scrape config (its bearer token read from a file),
scrapes a running gateway and evaluates a shipped alert rule over what it scraped."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from edge.api.tokens import create_token
from edge.runtime import Runtime
from tests.core.test_clock_runtime import Clocks
from tests.support.ports import free_port
from tests.support.procs import stop_process
from tests.support.site import load, running_site
from tests.support.tools import require_tool
from tests.support.waiting import until, until_async
from tests.sync.test_metrics_cli import METER, samples, scrape, sink
from tests.sync.test_prometheus import query, start_prometheus

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "community-edge.rules.yml"
JOB = "community-edge"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool", "Debian package prometheus")
    return subprocess.run([tool, *args], cwd=PROM, capture_output=True, text=True, timeout=120)


def alert_rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for group in doc["groups"] for r in group["rules"]}


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 14 rules found" in done.stdout


def test_each_alert_fires_and_stays_quiet_in_the_unit_tests() -> None:
    done = promtool("test", "rules", "tests.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    # every alert is tested at least once with a case that fires
    tests = yaml.safe_load((PROM / "tests.yml").read_text())["tests"]
    fired = {
        case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")
    }
    assert fired == set(alert_rules())


async def test_the_rules_use_only_families_a_gateway_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule on a renamed or missing family would never fire: each `edge_*` name the rules use
    must be in a scrape of a gateway with a device, a sink that fails, a pull consumer and a byte
    cap."""
    dead = f"http://127.0.0.1:{free_port()}/ingest"
    monkeypatch.setenv("EDGE_TEST_CITY_TOKEN", "ce_pullcitytoken_" + "x" * 32)
    doc = {
        "devices": [METER],
        "upstream": [{**sink(dead), "retry": {"initial": "10ms", "max": "50ms"}}],
        "consumers": [{"id": "city", "token_env": "EDGE_TEST_CITY_TOKEN"}],
        "storage": {"max_bytes": "64MiB"},
    }
    async with running_site(tmp_path, doc) as rt:
        # time until full needs the journal's own rate: two commits a second apart
        await until(lambda: rt.journal.rates()[0], timeout=20, what="two commits a second apart")
        text = await scrape(rt.web_port, create_token(rt.state, "prom", ["read"]))
    exported = {name for name, _ in samples(text)}
    used = set()
    for rule in alert_rules().values():
        used |= set(re.findall(r"\b(edge_[a-z_]+)\b", rule["expr"]))
    assert used, "the rules name no edge_ family"
    assert used <= exported, sorted(used - exported)
    # the process collector is on the registry /metrics serves
    process = {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"}
    assert process | {"process_start_time_seconds", "edge_build_info"} <= exported


async def test_prometheus_scrapes_with_the_shipped_config_and_evaluates_a_rule(tmp_path: Path) -> None:
    prometheus = require_tool("prometheus", "Debian package prometheus")
    # the kernel's sync status as the test says (unsynchronised, so not trusted), the clocks real
    doc = {"devices": [METER], "clock": {"trust_unsynced": False}}
    rt = Runtime(load(tmp_path, doc), clock_sync=Clocks().sync)
    await rt.start()
    server = None
    log_path = tmp_path / "prometheus.log"
    try:
        assert rt.state is not None and rt.web_port is not None
        target = f"127.0.0.1:{rt.web_port}"
        # the shipped config with this machine's paths: token file, targets file, rules file
        token_file = tmp_path / "community-edge.token"
        token_file.write_text(create_token(rt.state, "prometheus", ["read"]) + "\n")
        token_file.chmod(0o600)
        targets = tmp_path / "targets" / "gw.yml"
        targets.parent.mkdir()
        targets.write_text(yaml.safe_dump([{"targets": [target], "labels": {"site": "test-site"}}]))
        config = yaml.safe_load((PROM / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(RULES)]
        job = config["scrape_configs"][0]
        assert job["job_name"] == JOB and job["authorization"]["type"] == "Bearer"
        job["authorization"]["credentials_file"] = str(token_file)
        job["scrape_timeout"] = "1s"
        job["file_sd_configs"][0]["files"] = [str(targets.parent / "*.yml")]
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        checked = promtool("check", "config", str(config_path))
        assert checked.returncode == 0, checked.stdout + checked.stderr

        port = free_port()
        api = f"http://127.0.0.1:{port}"
        server = start_prometheus(prometheus, config_path, port, log_path)
        async with aiohttp.ClientSession() as http:

            async def pending() -> bool:
                assert server is not None and server.poll() is None, log_path.read_text()[-3000:]
                try:
                    found = await query(http, api, 'ALERTS{alertname="EdgeClockUntrusted"}')
                except aiohttp.ClientError:
                    return False  # not listening yet
                return bool(found)

            await until_async(pending, timeout=60, what="Prometheus evaluating EdgeClockUntrusted")
            up = await query(http, api, f'up{{job="{JOB}"}}')
            build = await query(http, api, "edge_build_info")
            alert = await query(http, api, 'ALERTS{alertname="EdgeClockUntrusted"}')
            # the rule's expression as shipped, over the scraped data
            expr = await query(http, api, alert_rules()["EdgeClockUntrusted"]["expr"])
            quiet = await query(http, api, alert_rules()["EdgeDeviceOffline"]["expr"])
    finally:
        stop_process(server)
        await rt.stop()
    assert [(s["metric"]["instance"], s["metric"]["site"], s["value"][1]) for s in up] == [
        (target, "test-site", "1")
    ], log_path.read_text()[-3000:]
    info = rt.build_info()
    assert [{k: s["metric"][k] for k in info} for s in build] == [info]
    assert alert[0]["metric"]["alertstate"] == "pending" and alert[0]["metric"]["instance"] == target
    assert [(s["metric"]["instance"], s["value"][1]) for s in expr] == [(target, "0")]
    assert quiet == []  # the meter is online
