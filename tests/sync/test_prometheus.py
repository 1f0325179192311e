"""A real Prometheus server scrapes the gateway's /metrics with a bearer token twice a second and
computes the ingest rate from the counters, while another scraper reads /metrics as fast as it
can: what Prometheus sees must not depend on that other scraper."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from tests.support.ports import free_port
from tests.support.procs import stop_process
from tests.support.site import running_site
from tests.support.tools import require_tool
from tests.support.waiting import until, until_async
from tests.sync.test_metrics_cli import METER, METER_POINTS, scrape

SCRAPE_EVERY = "500ms"
WINDOW = "5s"  # ten scrapes, five of the meter's bursts
# rate() over a window the series only partly covers reads low (11/s for 20/s after 6 s of a 10 s
# window): wait until the series is older than the window
HISTORY = "10s"
SCRAPES_BEFORE = 14  # at 500 ms: the first one is 6.5 s old, more than WINDOW
TOLERANCE = 0.3  # bursts once a second against scrapes twice a second, on a loaded machine
OTHER_EVERY = 0.05  # the other scraper: 10 reads for each of Prometheus's


def prometheus_config(target_port: int, token: str) -> str:
    return json.dumps(  # YAML is a superset of JSON
        {
            "global": {"scrape_interval": SCRAPE_EVERY, "evaluation_interval": SCRAPE_EVERY},
            "scrape_configs": [
                {
                    "job_name": "edge",
                    "scrape_interval": SCRAPE_EVERY,
                    "scrape_timeout": SCRAPE_EVERY,
                    "authorization": {"type": "Bearer", "credentials": token},
                    "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                }
            ],
        }
    )


def start_prometheus(prometheus: str, config: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Prometheus on 127.0.0.1:`port` with its storage beside `config`, logging to `log_path`."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={config.parent / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=config.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def query(http: aiohttp.ClientSession, api: str, promql: str) -> list[dict[str, Any]]:
    async with http.get(f"{api}/api/v1/query", params={"query": promql}) as r:
        body = await r.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def value(http: aiohttp.ClientSession, api: str, promql: str) -> float | None:
    result = await query(http, api, promql)
    return float(result[0]["value"][1]) if result else None


async def other_scraper(port: int, token: str, stop: asyncio.Event) -> int:
    """Read /metrics every OTHER_EVERY seconds until `stop`; returns how many times."""
    n = 0
    while not stop.is_set():
        await scrape(port, token)
        n += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), OTHER_EVERY)
    return n


async def test_prometheus_rates_the_counters_undisturbed_by_another_scraper(tmp_path: Path) -> None:
    prometheus = require_tool("prometheus", "Debian package prometheus")
    async with running_site(tmp_path, {"devices": [METER]}) as rt:
        # the journal measures its own rate once it has commits a second apart
        await until(lambda: rt.journal.rates()[0], timeout=20, what="two commits a second apart")
        config = tmp_path / "prometheus.yml"
        config.write_text(prometheus_config(rt.web_port, create_token(rt.state, "prometheus", ["read"])))
        port = free_port()
        api = f"http://127.0.0.1:{port}"
        log_path = tmp_path / "prometheus.log"
        server = start_prometheus(prometheus, config, port, log_path)
        stop = asyncio.Event()
        own_token = create_token(rt.state, "other", ["read"])
        other = asyncio.ensure_future(other_scraper(rt.web_port, own_token, stop))
        try:
            async with aiohttp.ClientSession() as http:

                async def window_filled() -> bool:
                    assert server.poll() is None, log_path.read_text()[-3000:]
                    try:
                        n = await value(
                            http, api, f"count_over_time(edge_readings_received_total[{HISTORY}])"
                        )
                    except aiohttp.ClientError:
                        return False  # not listening yet
                    return n is not None and n >= SCRAPES_BEFORE

                await until_async(
                    window_filled, timeout=90, what=f"Prometheus scraping /metrics {SCRAPES_BEFORE} times"
                )
                up = await value(http, api, 'up{job="edge"}')
                rate = await value(http, api, f"rate(edge_readings_received_total[{WINDOW}])")
                lowest = await value(http, api, f"min_over_time(edge_ingest_rate[{WINDOW}])")
                highest = await value(http, api, f"max_over_time(edge_ingest_rate[{WINDOW}])")
        finally:
            stop.set()
            scraped_meanwhile = await other
            stop_process(server)
    assert up == 1, log_path.read_text()[-3000:]
    assert scraped_meanwhile >= 2 * SCRAPES_BEFORE  # the other scraper read far more often
    low, high = (1 - TOLERANCE) * METER_POINTS, (1 + TOLERANCE) * METER_POINTS
    # 20 readings a second
    assert rate is not None and low <= rate <= high, rate
    # every sample Prometheus took of the gauge, not just the last: none was the other scraper's
    # few milliseconds since its previous read
    assert lowest is not None and highest is not None
    assert low <= lowest <= highest <= high, (lowest, highest)
