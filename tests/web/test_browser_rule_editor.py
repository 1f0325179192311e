"""The rule editor in headless Chromium keeps the author's text: a pack imported from the rules
page, one line edited and saved in the editor, exported, comes back byte for byte but for that
line. The editor's messages are in the reader's language (an unknown key named with the key it
looks like, in Chinese on a zh-CN page), a YAML error says its prefix once, the state badge has
the list's colour, and the version history shows no empty diff box."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.model import Reading
from tests.rules.test_rule_text import PACK
from tests.support.site import running_site
from tests.web.conftest import PASSWORD
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, logged_in_page, open_page, site_context, watched_page

__all__ = ["browser"]  # the fixture shared with the module it comes from

EDITED = PACK.replace("    if: value > 85\n", "    if: value > 90\n")


async def _badge_class(page: Any, selector: str) -> str:
    return str(await page.locator(selector).first.get_attribute("class"))


async def test_a_pack_keeps_its_text_through_import_edit_in_the_editor_and_export(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        page = await logged_in_page(browser, rt)
        pack = tmp_path / "community.yaml"
        pack.write_text(PACK, encoding="utf-8")
        await open_page(page, "/rules")
        await page.set_input_files("#pack-file", str(pack))
        await page.wait_for_selector("#rules-msg .ok-box", timeout=T)

        # a pending rule: its badge has one colour in the list and in the editor
        rt.hub.ingest([Reading(time.time(), "bin-east-1.fill_pct", 95.0)])
        await open_page(page, "/rules")
        row = "tr[data-rule=bin-full-east] .badge"
        await page.wait_for_function(
            "s => document.querySelector(s)?.classList.contains('badge-warn')", arg=row, timeout=T
        )
        in_list = await _badge_class(page, row)
        await open_page(page, "/rules/bin-full-east")
        assert await _badge_class(page, "h1 .badge") == in_list == "badge badge-warn"

        text = await page.input_value("#rule-text")
        assert text.splitlines()[1:5] == [
            "id: bin-full-east",
            "when: bin-east-*.fill_pct",
            "if: value > 85",
            "for: 1m   # shorthand for 60 s",
        ]
        assert not await page.locator("#version-diff").is_visible()  # no empty box under the history
        assert await page.eval_on_selector("#rule-help-text", "e => getComputedStyle(e).whiteSpace") == "pre"

        await page.fill("#rule-text", text.replace("if: value > 85", "if: value > 90"))
        await page.wait_for_selector("#rule-status.ok", timeout=T)
        await page.click("#save-rule")
        await page.wait_for_selector("#save-msg .ok-box", timeout=T)
        exported = await (await page.request.get("/api/v1/rules/export")).text()
        assert exported == EDITED

        # a YAML error says "YAML syntax" once
        await page.fill("#rule-text", "id: x\nwhen: [a-1.b\n")
        await page.wait_for_selector("#rule-status.bad", timeout=T)
        assert (await page.inner_text("#rule-status")).count("YAML syntax") == 1
        assert page.errors == []

        # in Chinese: the misspelt key is named with the key it looks like
        zh_ctx = await site_context(browser, rt, "zh-CN")
        resp = await zh_ctx.request.post("/api/v1/auth/login", data={"name": "admin", "password": PASSWORD})
        assert resp.status == 200
        zh = await watched_page(zh_ctx)
        await open_page(zh, "/rules/new")
        await zh.fill("#rule-text", "id: x\nwhn: a-1.b\nthen:\n  - alert: x\n")
        await zh.wait_for_selector("#rule-status.bad", timeout=T)
        status = await zh.inner_text("#rule-status")
        assert "未知的键“whn”——您是指“when”吗？" in status, status
        assert "required" not in status and "unknown" not in status
        assert zh.errors == []
