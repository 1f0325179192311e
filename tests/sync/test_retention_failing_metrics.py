"""A journal whose retention steps fail (a damaged page) says so wherever a person or a monitor
looks: `/healthz` answers 200 `degraded` with the reason (records are still journaled),
`/metrics` exports `edge_retention_failures_total` and `edge_retention_failing`, the shipped
alert rule `EdgeRetentionFailing` fires on the latter, and `edge buffer stats` and `edge status`
print a warning line. Before, only the log said it, every 5 s, while every figure looked fine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.runtime import Runtime
from edge.status_cli import HEALTHY
from tests.fleet.test_prometheus_rules import alert_rules, promtool
from tests.store.helpers import damage_journal_leaf, open_journal, readings
from tests.support.cli import edge_cli
from tests.support.ports import free_port
from tests.support.site import load, site_file
from tests.support.waiting import until
from tests.sync.test_metrics_cli import samples, scrape


def site_doc() -> dict[str, Any]:
    """The site: records kept a minute; its web server on a port `edge status` can be told."""
    return {"storage": {"keep_history": "60s"}, "web": {"listen": f"127.0.0.1:{free_port()}"}}


async def old_records(tmp_path: Path) -> None:
    """A journal of 20,000 records an hour old (past the site's keep_history, for retention), then
    the 200,000 newest ones a start reads the latest values from, all recent."""
    journal = open_journal(tmp_path, keep_history=None)  # nothing expires while it is filled
    try:
        journal.append(readings(20_000, start_ts=time.time() - 3600, step=1e-3))
        journal.append(readings(200_000, start_ts=time.time(), step=1e-5))
        await journal.flush()
    finally:
        await journal.close()


@asynccontextmanager
async def gateway(tmp_path: Path, doc: dict[str, Any]) -> AsyncIterator[Runtime]:
    rt = Runtime(load(tmp_path, doc))
    rt.journal.retention_interval = 0.02
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
        return r.status, await r.json()


@asynccontextmanager
async def damaged_gateway(tmp_path: Path) -> AsyncIterator[tuple[Runtime, Path]]:
    """A running gateway whose journal has a damaged old page: its retention steps fail (two have,
    when this yields); with the site file."""
    await old_records(tmp_path)
    damage_journal_leaf(tmp_path / "edge.db", offset=2)
    doc = site_doc()
    config = site_file(tmp_path, doc)
    async with gateway(tmp_path, doc) as rt:
        await until(lambda: rt.journal.retention_failures >= 2, timeout=30, what="failed retention steps")
        yield rt, config


async def test_healthz_says_degraded_with_the_reason(tmp_path: Path) -> None:
    async with damaged_gateway(tmp_path) as (rt, _):
        assert rt.web_port is not None
        code, body = await healthz(rt.web_port)
    assert code == 200, body  # records are still journaled
    assert body["status"] == "degraded", body
    assert body["reason"].startswith("journal retention failing ("), body
    assert "malformed" in body["reason"] and body["retention_failing"] == body["reason"]


async def test_metrics_count_the_failed_steps(tmp_path: Path) -> None:
    async with damaged_gateway(tmp_path) as (rt, _):
        assert rt.web_port is not None and rt.state is not None
        scraped = samples(await scrape(rt.web_port, create_token(rt.state, "prom", ["read"])))
    assert scraped[("edge_retention_failures_total", ())] >= 2
    assert scraped[("edge_retention_failing", ())] == 1


async def test_buffer_stats_and_status_print_a_warning(tmp_path: Path) -> None:
    async with damaged_gateway(tmp_path) as (rt, config):
        assert rt.state is not None
        stats = await asyncio.to_thread(edge_cli, "buffer", "stats", "-c", str(config))
        assert stats.returncode == 0, stats.stderr
        warning = [line for line in stats.stdout.splitlines() if "retention failing" in line]
        assert len(warning) == 1 and warning[0].startswith("WARNING"), stats.stdout
        assert "malformed" in warning[0] and "records past their retention are not deleted" in warning[0]

        token_file = tmp_path / "status.token"
        token_file.write_text(create_token(rt.state, "status", ["read"]) + "\n")
        for more in (("--token-file", str(token_file)), ()):  # with a token, and /healthz alone
            done = await asyncio.to_thread(edge_cli, "status", "-c", str(config), *more)
            # records are still journaled: a warning, not an unhealthy gateway
            assert done.returncode == HEALTHY, done.stdout + done.stderr
            lines = [line.strip() for line in done.stdout.splitlines()]
            failing = [line for line in lines if line.startswith("WARNING retention failing: ")]
            assert len(failing) == 1 and "malformed" in failing[0], done.stdout


async def test_a_sound_journal_says_nothing_of_retention(tmp_path: Path) -> None:
    await old_records(tmp_path)
    doc = site_doc()
    config = site_file(tmp_path, doc)
    async with gateway(tmp_path, doc) as rt:
        assert rt.web_port is not None and rt.state is not None
        await until(lambda: rt.journal.counters["retention_deleted"] > 0, timeout=30, what="retention")
        code, body = await healthz(rt.web_port)
        assert (code, body["status"]) == (200, "ok") and "reason" not in body, body
        scraped = samples(await scrape(rt.web_port, create_token(rt.state, "prom", ["read"])))
        assert scraped[("edge_retention_failures_total", ())] == 0
        assert scraped[("edge_retention_failing", ())] == 0
        stats = await asyncio.to_thread(edge_cli, "buffer", "stats", "-c", str(config))
        assert stats.returncode == 0 and "retention failing" not in stats.stdout, stats.stdout + stats.stderr


def test_the_alert_rule_on_failing_retention() -> None:
    """`EdgeRetentionFailing` is shipped, reads the exported gauge, and its promtool cases (one
    gateway failing for good, one that failed once) pass."""
    rule = alert_rules()["EdgeRetentionFailing"]
    assert "edge_retention_failing" in rule["expr"]
    done = promtool("test", "rules", "tests.yml")
    assert done.returncode == 0, done.stdout + done.stderr
