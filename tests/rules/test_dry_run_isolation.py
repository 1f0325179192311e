"""A gateway keeps serving whatever rule it is given: a live rule that would blow up goes to `error`
while readings keep being journaled and /healthz answers, and a dry run runs in a child process
that the event loop never waits on, stopped at its budget and reaped on every path."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.api.tokens import create_token
from edge.model import Reading
from tests.rules.test_api import Client
from tests.store.helpers import sql
from tests.support.procs import stop_process
from tests.support.site import running_site
from tests.support.waiting import until

HEALTHZ_BOUND_S = 0.5  # generous: an idle loop answers in a few ms even on a loaded machine
WORST = {"id": "worst", "when": "d.*", "if": "(str(value) * 500).count('1') > 3"}


async def _healthz(session: aiohttp.ClientSession, port: int) -> float:
    start = time.monotonic()
    async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
        assert resp.status == 200
    return time.monotonic() - start


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def test_live_rule_that_would_blow_up_goes_to_error_while_the_gateway_serves(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        comp = rt.components["rules"]
        comp.put({"id": "bomb", "when": "d.x", "if": "(((int(ts)**64)**64)**64)**8 > 0"}, "test", "create")
        comp.put(
            {"id": "fine", "when": "d.x", "if": "value > 5", "then": [{"alert": "{value}"}]}, "test", "create"
        )
        now = time.time()
        lags = []
        for i in range(20):
            rt.hub.ingest([Reading(now + i, "d.x", 10 + i)])
            lags.append(await _healthz(session, rt.web_port))
        assert max(lags) < HEALTHZ_BOUND_S, lags
        bomb = comp.describe(comp.store.get("bomb"))
        assert bomb["state"] == "error" and "4096 bits" in bomb["error"], bomb
        assert comp.describe(comp.store.get("fine"))["state"] == "active"
        await rt.journal.flush()
        rows = sql(rt.journal, "SELECT count(*) FROM journal WHERE point = 'd.x'")
        assert rows[0][0] == 20


async def _fill_journal(rt: Any, n: int) -> None:
    now = time.time()
    step = 4 * 3600 / n
    rt.journal.append([Reading(now - 4 * 3600 + i * step, f"d.p{i % 50}", i * 1.37) for i in range(n)])
    await rt.journal.flush()


async def test_dry_run_holds_no_loop_stops_at_its_budget_and_leaves_no_process(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        comp = rt.components["rules"]
        comp.dry_run_seconds = 1.5
        await _fill_journal(rt, 300_000)
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        body = {"rule": WORST, "hours": 5}

        started = time.monotonic()
        runs = [asyncio.create_task(tech.call("POST", "/dry-run", body)) for _ in range(2)]
        await until(lambda: len(comp.dry_run_procs) == 2, what="two dry-run processes")
        pids = [p.pid for p in comp.dry_run_procs]
        assert all(_alive(pid) for pid in pids)

        # a third is refused at once, with when to come back
        async with session.post(tech.base + "/dry-run", json=body, headers=tech.h) as resp:
            assert resp.status == 429, await resp.text()
            assert 1 <= int(resp.headers["Retry-After"]) <= 2
            assert "2 dry runs are running" in (await resp.json(content_type=None))["detail"]

        lags = []
        while not all(r.done() for r in runs):
            lags.append(await _healthz(session, rt.web_port))
        elapsed = time.monotonic() - started
        for status, answer in [r.result() for r in runs]:
            assert status == 422, answer
            assert answer["limit"] == "time" and "within 1.5 s" in answer["detail"]
        assert elapsed < 1.5 + 10  # stopped at its budget (the margin is process start-up on a busy box)
        assert len(lags) >= 3 and max(lags) < HEALTHZ_BOUND_S, lags
        assert not any(_alive(pid) for pid in pids)
        assert not comp.dry_runs and not comp.dry_run_procs

        # within budget the answer has the usual shape
        comp.dry_run_seconds = 60
        status, answer = await tech.call("POST", "/dry-run", {"rule": WORST, "hours": 0.01})
        assert status == 200, answer
        assert set(answer) >= {"firings", "evaluated", "prefill"} and answer["evaluated"] > 0


async def test_dry_run_process_is_reaped_when_cancelled_and_at_shutdown(tmp_path: Path) -> None:
    from rules.model import parse_rule

    pids = []
    async with running_site(tmp_path, {"devices": []}) as rt:
        comp = rt.components["rules"]
        await _fill_journal(rt, 100_000)
        rule = parse_rule(WORST)
        now = time.time()

        task = asyncio.create_task(comp.dry_run(rule, now - 5 * 3600, now))
        await until(lambda: comp.dry_run_procs, what="a dry-run process")
        pids.append(next(iter(comp.dry_run_procs)).pid)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not _alive(pids[0]) and not comp.dry_runs

        at_shutdown = asyncio.create_task(comp.dry_run(rule, now - 5 * 3600, now))
        await until(lambda: comp.dry_run_procs, what="a dry-run process")
        pids.append(next(iter(comp.dry_run_procs)).pid)
    assert not _alive(pids[1])
    assert isinstance((await asyncio.gather(at_shutdown, return_exceptions=True))[0], Exception)


async def test_dry_run_over_its_memory_cap_is_refused_with_the_limit(tmp_path: Path) -> None:
    from edge.api.problem import Problem
    from rules.model import parse_rule

    async with running_site(tmp_path, {"devices": []}) as rt:
        comp = rt.components["rules"]
        comp.dry_run_memory = 160 * 2**20
        await _fill_journal(rt, 300_000)
        # a firing with a long message for every record: the answer alone outgrows the cap
        rule = parse_rule(
            {**WORST, "if": None, "notify": "always", "then": [{"alert": "{value} " + "x" * 200}]}
        )
        now = time.time()
        with pytest.raises(Problem) as err:
            await comp.dry_run(rule, now - 5 * 3600, now)
        assert err.value.status_code == 422 and err.value.extra == {"limit": "memory"}
        assert "160 MiB" in err.value.detail and not comp.dry_run_procs

        # the child's own address-space cap holds without the parent's watch (a gateway gone)
        request = {
            "journal": str(rt.journal.path),
            "rule": rule.rule.doc(),
            "timezone": None,
            "since": now - 5 * 3600,
            "until": now,
            "max_rows": 0,
            "memory_bytes": 80 * 2**20,
            "seconds": 60,
        }
        returncode, out = await asyncio.to_thread(_run_worker, request)
        assert returncode == 1 and json.loads(out) == {
            "error": "the dry run needed more than 80 MiB of memory",
            "limit": "memory",
        }


def _run_worker(request: dict[str, Any]) -> tuple[int, bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rules.dry_run_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, _ = proc.communicate(json.dumps(request).encode(), timeout=60)
    finally:
        stop_process(proc)
    return proc.returncode, out
