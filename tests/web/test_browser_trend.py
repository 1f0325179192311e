"""The device page's trend ranges in headless Chromium against an in-process runtime: 24 h and 7 d
draw minute and hour buckets from the trend index with their min-max band, 1 h the raw readings;
the overview lists the trend index among the components."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.model import Reading
from tests.support.site import running_site
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, logged_in_page, open_page

__all__ = ["browser"]  # the fixture, shared with test_browser_pages

SITE = {
    "devices": [
        {
            "id": "meter",
            "driver": "sim",
            "points": [
                {"name": "power_kw", "signal": "sine", "min": 2, "max": 9, "period": "20s", "interval": "1s"}
            ],
        }
    ]
}


async def chart(page: Any, resolution: str) -> int:
    """Wait until the trend is drawn at `resolution`; returns its number of points."""
    await page.wait_for_function(
        "r => document.getElementById('trend-resolution')?.dataset.resolution === r",
        arg=resolution,
        timeout=T,
    )
    return int(await page.get_attribute("svg.trend", "data-points"))


async def test_trend_ranges_on_the_device_page(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, SITE) as rt:
        now = time.time()
        week = [Reading(now - 7 * 86400 + i * 60, "meter.power_kw", float(i % 50)) for i in range(7 * 1440)]
        rt.hub.ingest(week)
        await rt.journal.flush()
        await rt.components["trend"].caught_up()
        page = await logged_in_page(browser, rt)
        await open_page(page, "/devices/meter")
        assert await chart(page, "raw") >= 60, "1 h: every reading"

        await page.click('#trend-range button[data-range="24h"]')
        assert await chart(page, "minute") >= 1400
        assert int(await page.get_attribute("svg.trend", "data-band")) >= 1400
        assert await page.locator("svg.trend path.band").count() == 1
        assert "24 h" in await page.inner_text(".card h2 >> nth=1")

        await page.click('#trend-range button[data-range="7d"]')
        assert 160 <= await chart(page, "hour") <= 170
        assert await page.get_attribute('#trend-range button[data-range="7d"]', "aria-pressed") == "true"

        await page.click('#trend-range button[data-range="1h"]')
        assert await chart(page, "raw") >= 60
        assert await page.locator("svg.trend path.band").count() == 0

        await open_page(page, "/")
        card = page.locator('[data-component="trend"]')
        await card.wait_for(timeout=T)
        assert "Trend index" in await card.inner_text()
        assert int(await page.inner_text("[data-k=comp-trend-cursor]")) > 10_000
        assert page.errors == []
