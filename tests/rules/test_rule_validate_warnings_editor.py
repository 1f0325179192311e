"""The rule editor in headless Chromium lists, under "The rule is valid.", what the rule names that
the site does not have (the gateway's `warnings`), each on its line: it said the rule was valid
and nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.site import running_site
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, logged_in_page, open_page

__all__ = ["browser"]  # the fixture shared with the module it comes from

SITE = """\
devices:
  - id: meter-b1
    driver: sim
    points:
      - {name: voltage, signal: constant, value: 230, interval: 1h}
"""
RULE = "id: r1\nwhen: meter-b9.voltage\nif: p('meter-b1.voltage') > 100\nthen:\n  - alert: x\n"


async def test_the_editor_lists_the_warnings_of_a_valid_rule(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, SITE) as rt:
        page = await logged_in_page(browser, rt)
        await open_page(page, "/rules/new")
        await page.fill("#rule-text", RULE)
        await page.wait_for_selector("#rule-warnings li:has-text('meter-b9.voltage')", timeout=T)
        assert await page.locator("#rule-status.ok").count() == 1
        (warning,) = await page.locator("#rule-warnings li").all_inner_texts()
        assert "meter-b9.voltage" in warning and "when[0].point" in warning, warning
        assert await page.locator("#rule-warnings li").first.get_attribute("data-line") == "2"

        await page.fill("#rule-text", RULE.replace("meter-b9", "meter-b1"))  # fixed: the list goes
        await page.wait_for_selector("#rule-warnings", state="hidden", timeout=T)
        assert await page.locator("#rule-status.ok").count() == 1
