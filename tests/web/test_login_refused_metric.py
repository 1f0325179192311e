"""`/metrics` counts the refused logins by reason (`edge_login_refused_total`), wrong passwords
and the throttle's refusals alike, so a flood shows on the site's dashboards and alerts as it does
in the audit log; every reason is there from 0, and promtool accepts the families."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from edge.api.account_routes import ACCOUNT_WORK_KEY
from edge.api.tokens import create_token
from tests.support.site import running_site
from tests.support.tools import require_tool
from tests.sync.test_metrics_cli import scrape
from tests.web.conftest import SITE
from tests.web.test_login_flood_audit import _flood


def refused_logins(text: str) -> dict[str, float]:
    return {
        s.labels["reason"]: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "edge_login_refused_total"
    }


async def test_refused_logins_are_counted_by_reason_in_metrics(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "Debian package prometheus")
    async with running_site(tmp_path, SITE) as rt:
        token = create_token(rt.state, "scraper", ["read"])
        before = refused_logins(await scrape(rt.web_port, token))
        assert before == {"wrong_password": 0, "slowed": 0, "address_limit": 0, "in_flight": 0}, before

        codes = await _flood(f"http://127.0.0.1:{rt.web_port}", 60)
        assert codes.get(401) and codes.get(429), codes
        text = await scrape(rt.web_port, token)
        after = refused_logins(text)
        assert after["wrong_password"] == codes[401], (after, codes)
        assert sum(after.values()) == sum(codes.values()) == 60, (after, codes)
        assert after == dict.fromkeys(before, 0) | dict(rt.web_runner.app[ACCOUNT_WORK_KEY].refused.by_reason)

        checked = await asyncio.to_thread(
            subprocess.run,
            [promtool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # promtool prints one line per problem (a counter without _total, a missing HELP, a bad unit)
        assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), (
            checked.stdout + checked.stderr
        )
