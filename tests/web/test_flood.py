"""The web server cannot be flooded or starved: a real `edge run`, started with the soft fd limit a
systemd unit without LimitNOFILE gets (1024), keeps answering /healthz and keeps
ingesting near its unloaded rate, with no gap in a 1 s point, while 1,000 slow connections and a
loop of worst-case API requests (the largest YAML the cap allows, deep JSON, the biggest history
and event queries, with an API token) run against it. Loopback only, bounded in time."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from edge.api.limits import HEADER_TIMEOUT
from edge.model import Event, Quality, Reading, Record, Severity
from edge.store.journal import Journal
from edge.web.rule_yaml import MAX_TEXT_BYTES
from edge.web.ui_api import MAX_LIMIT
from tests.support.cli import answering, edge_cli, start_edge_run
from tests.support.ports import free_port
from tests.support.procs import stop_process
from tests.support.site import site_file

ROOT = Path(__file__).resolve().parents[2]
SITE = """
devices:
  - id: meter
    driver: sim
    points:
      - {name: tick, signal: counter, interval: 1s}
      - {name: fast, signal: counter, interval: 100ms}
"""
UNIT_DEFAULT_NOFILE = 1024
SLOW_CONNECTIONS = 1000
# unloaded, then loaded; longer than the header timeout, so slow connections cycle
WINDOW_S = HEADER_TIMEOUT + 2.0
PROBE_EVERY = 0.25
# A starved server never answers (its descriptors are gone) and a starved loop stops ingesting for
# the whole flood; the bounds below tell that apart from a slow, shared machine (a run beside seven
# busy processes measured 1.6 s for /healthz), they are not figures: bench/ measures those.
HEALTHZ_BOUND_S = 5.0
MAX_GAP_S = 5.0
PREFILL = MAX_LIMIT + 1000


def _low_fd_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (UNIT_DEFAULT_NOFILE, hard))


def _readings(db: Path, point: str, since: float, until: float) -> list[float]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT ts FROM journal WHERE point = ? AND kind IS NULL AND ts >= ? AND ts < ? ORDER BY ts",
            (point, since, until),
        ).fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows]


def _prefill(db: Path) -> None:
    """An hour of history before the test: enough events and readings that the history and event
    queries answer their largest pages (MAX_LIMIT rows)."""
    journal = Journal(str(db)).open()
    start = time.time() - 3600
    records: list[Record] = []
    for i in range(PREFILL):
        ts = start + i * 3600 / PREFILL
        records.append(Reading(ts, "meter.fast", float(i), Quality.GOOD))
        payload = {"rule": "fill", "state": "fired", "value": i, "message": "bin over 90 % full " * 4}
        records.append(Event("alert", "meter", Severity.WARNING, payload, ts))
    journal.append(records)
    asyncio.run(journal.flush())
    journal.close_sync()


def _largest_yaml() -> str:
    line = "- {a: 1, b: [x, y, z], c: hello}\n"
    text = line * (MAX_TEXT_BYTES // len(line))
    assert len(text.encode()) <= MAX_TEXT_BYTES
    return text


async def _probe(base: str, stop: asyncio.Event, latencies: list[float], failures: list[str]) -> None:
    """GET /healthz on a new connection every PROBE_EVERY until `stop`."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
                asyncio.timeout(10),
                s.get(base + "/healthz") as r,
            ):
                await r.read()
                if r.status != 200:
                    failures.append(f"status {r.status}")
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            failures.append(repr(exc))
        latencies.append(time.monotonic() - started)
        try:
            await asyncio.wait_for(stop.wait(), PROBE_EVERY)
        except TimeoutError:
            pass


async def _worst_case(
    http: aiohttp.ClientSession, base: str, stop: asyncio.Event, statuses: Counter[str]
) -> None:
    big_yaml = {"text": _largest_yaml()}
    deep_json = '{"data": ' + "[" * 900 + "]" * 900 + "}"

    async def loop(name: str, method: str, path: str, **kw: Any) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(30), http.request(method, base + path, **kw) as r:
                    await r.read()
                    statuses[f"{name} {r.status}"] += 1
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                statuses[f"{name} {type(exc).__name__}"] += 1

    json_header = {"Content-Type": "application/json"}
    await asyncio.gather(
        loop("yaml", "POST", "/api/v1/ui/yaml", json=big_yaml),  # two viewers editing rules
        loop("yaml", "POST", "/api/v1/ui/yaml", json=big_yaml),
        loop("deep", "POST", "/api/v1/ui/yaml", data=deep_json, headers=json_header),
        loop("history", "GET", f"/api/v1/history?point=meter.fast&since=0&resolution=raw&limit={MAX_LIMIT}"),
        loop("events", "GET", f"/api/v1/events?limit={MAX_LIMIT}"),
        loop("alerts", "GET", "/api/v1/alerts/active"),
    )


async def _unloaded(base: str) -> tuple[list[float], list[str]]:
    """Probe /healthz for WINDOW_S with nothing else running."""
    stop = asyncio.Event()
    latencies: list[float] = []
    failures: list[str] = []
    probe = asyncio.ensure_future(_probe(base, stop, latencies, failures))
    await asyncio.sleep(WINDOW_S)  # the measurement window itself
    stop.set()
    await probe
    return latencies, failures


async def _loaded(base: str, token: str) -> tuple[list[float], list[str], Counter[str]]:
    """Probe /healthz for WINDOW_S while the worst-case requests loop (the slow clients run in
    their own process)."""
    stop = asyncio.Event()
    latencies: list[float] = []
    failures: list[str] = []
    statuses: Counter[str] = Counter()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        tasks = [
            asyncio.ensure_future(_probe(base, stop, latencies, failures)),
            asyncio.ensure_future(_worst_case(http, base, stop, statuses)),
        ]
        await asyncio.sleep(WINDOW_S)  # the measurement window itself
        stop.set()
        await asyncio.gather(*tasks)
    return latencies, failures, statuses


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_healthz_and_ingest_hold_under_a_connection_and_request_flood(tmp_path: Path) -> None:
    port = free_port()
    doc = yaml.safe_load(SITE)
    doc["web"] = {"listen": f"127.0.0.1:{port}"}
    config = site_file(tmp_path, doc)
    _prefill(tmp_path / "edge.db")
    made = edge_cli("tokens", "create", "-c", str(config), "flood", "--scope", "read")
    assert made.returncode == 0, made.stderr
    token = made.stdout.split()[0]
    log_path = tmp_path / "edge.log"
    base = f"http://127.0.0.1:{port}"
    edge = start_edge_run(config, log_path, preexec_fn=_low_fd_limit)
    flood: subprocess.Popen[str] | None = None
    try:
        asyncio.run(answering(base, edge))
        assert edge.poll() is None, log_path.read_text()[-3000:]
        unloaded_from = time.time()
        calm_latencies, calm_failures = asyncio.run(_unloaded(base))

        flood = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.web.slow_clients",
                str(port),
                str(SLOW_CONNECTIONS),
                str(WINDOW_S + 5),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert flood.stdout is not None
        assert json.loads(flood.stdout.readline()) == {"started": SLOW_CONNECTIONS}
        loaded_from = time.time()
        cpu_before = _cpu_seconds(edge.pid)
        latencies, failures, statuses = asyncio.run(_loaded(base, token))
        loaded_to = time.time()
        edge_cores = (_cpu_seconds(edge.pid) - cpu_before) / (loaded_to - loaded_from)
        flood_counts = json.loads(flood.communicate(timeout=60)[0].splitlines()[-1])
        edge.send_signal(signal.SIGTERM)
        edge.wait(timeout=30)
    finally:
        stop_process(flood)
        stop_process(edge)

    db = tmp_path / "edge.db"
    log_text = log_path.read_text()
    report = (
        f"healthz max {max(calm_latencies):.3f}s unloaded, {max(latencies):.3f}s loaded "
        f"({len(latencies)} probes); edge used {edge_cores:.2f} cores; requests {dict(statuses)}; "
        f"slow clients {flood_counts}"
    )
    print(report)
    assert not calm_failures and not failures, (failures, report)
    assert max(latencies) < HEALTHZ_BOUND_S, report

    # the flood was real: the server held connections, refused or evicted the rest, closed slow ones
    assert flood_counts["max_open"] >= 500 and flood_counts["closed_by_server"] > 0, report
    assert "Traceback" not in log_text and "out of system resource" not in log_text, log_text[-3000:]
    assert log_text.count("web connections refused") == 1, log_text[-3000:]  # once a minute at most
    assert log_path.stat().st_size < 1_000_000, "the log grew by a megabyte"
    # the worst-case requests were served or refused as designed, never a 5xx
    assert statuses["yaml 200"] >= 3 and statuses["deep 422"] >= 3 and statuses["history 200"] >= 3, report
    assert statuses["events 200"] >= 3 and statuses["alerts 200"] >= 3, report
    answered = sum(n for k, n in statuses.items() if k.split()[1].isdigit())
    assert not [k for k in statuses if k.split()[1][0] in "5"], report
    # a connection the client opened in the same instant as a burst of reconnecting slow clients
    # can be the oldest without a request when the cap overflows, and be closed: rare, not the rule
    lost = sum(statuses.values()) - answered
    assert lost <= 0.02 * answered, report

    # ingest: no gap in the 1 s point, and as many readings as in the unloaded window
    ticks = _readings(db, "meter.tick", loaded_from - 1.0, loaded_to)
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert gaps and max(gaps) <= MAX_GAP_S, f"largest gap {max(gaps):.2f}s in {len(ticks)} readings"
    counts = {}
    for point in ("meter.tick", "meter.fast"):
        calm = len(_readings(db, point, unloaded_from, unloaded_from + WINDOW_S))
        loaded = len(_readings(db, point, loaded_from, loaded_from + WINDOW_S))
        counts[point] = (calm, loaded)
    print(f"readings in {WINDOW_S:g} s unloaded, loaded: {counts}; largest 1 s-point gap {max(gaps):.2f}s")
    # a starved loop loses most of them; half leaves room for other processes sharing the two
    # cores in the loaded window (a run beside CPU-heavy tests measured 0.875 for the 100 ms point)
    for calm, loaded in counts.values():
        assert loaded >= 0.5 * calm, counts
