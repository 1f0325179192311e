"""What only ever grows is exported as a counter (for rate()), checked on a live gateway's
/metrics with promtool."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from edge.api.tokens import create_token
from tests.support.site import running_site
from tests.support.tools import require_tool
from tests.support.waiting import until
from tests.sync.test_metrics_cli import METER, METER_POINTS, samples, scrape


async def test_skipped_schedules_are_a_rules_counter(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "Debian package prometheus")
    async with running_site(tmp_path, {"devices": [METER]}) as rt:
        await until(lambda: rt.hub.received >= METER_POINTS, timeout=20, what="a first poll of the meter")
        text = await scrape(rt.web_port, create_token(rt.state, "prom", ["read"]))
    got = samples(text)
    # a running count of schedule matches a clock jump went over: a counter like firings
    assert got[("edge_rules_count_total", (("counter", "schedules_skipped"),))] == 0
    check = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
        check.stdout + check.stderr
    )
