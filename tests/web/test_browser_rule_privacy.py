"""The rule editor in headless Chromium as each role sees it: a technician's dry-run of a rule over
health data is not run and says why (whether it fires would tell what the data holds), and a viewer
(no `rules` scope) gets the rule text without validation or dry-run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from edge.model import Event
from tests.support.site import running_site
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, open_page
from tests.web.test_browser_snapshots import _page_as
from tests.web.test_privacy import _users
from tests.web.test_rule_privacy import BP, SITE, _pull_token

__all__ = ["_pull_token", "browser"]  # fixtures shared with the modules they come from

RULE_TEXT = (
    "id: bp-dry\nwhen:\n  - event: blood_pressure\n"
    'then:\n  - alert: "{payload[resident]} {payload[systolic_mmhg]}"\n'
)


async def test_the_rule_editor_shows_each_role_only_what_it_may_see(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, SITE) as rt:
        rt.hub.ingest([Event("blood_pressure", "kiosk-1", payload=dict(BP), ts=time.time() - 60)])
        await rt.journal.flush()
        rt.components["rules"].put(
            {"id": "bp-live", "when": [{"event": "blood_pressure"}], "then": [{"alert": "x"}]},
            "test",
            "create",
        )
        for c in (await _users(rt)).values():
            await c.close()

        tech = await _page_as(browser, rt, "technician")
        await open_page(tech, "/rules/new")
        await tech.wait_for_selector("#rule-status.ok", timeout=T)  # the template, checked
        await tech.select_option("#dry-hours", "1")
        # Dry-run clicked while the check of the typing is still due (350 ms after the last key):
        # the click's own check is held until another check is asked for, as a slow gateway would
        # answer. It must run the rule typed, never the template parsed before it, so no second
        # check comes and the held one goes on after a second.
        second = asyncio.Event()
        held = 0

        async def hold_the_first(route: Any) -> None:
            nonlocal held
            held += 1
            if held == 1:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(second.wait(), 1.0)
            else:
                second.set()
            await route.continue_()

        await tech.route("**/api/v1/ui/yaml", hold_the_first)
        await tech.fill("#rule-text", RULE_TEXT)
        await tech.click("#dry-run")
        refusal = tech.locator("#dry-result .error")
        await refusal.wait_for(timeout=T)
        said = await refusal.inner_text()
        assert held == 1, "the check due after the typing ran beside the dry-run's own"
        assert said.startswith("Not run: this rule reads data above your role's privacy class (personal)")
        assert "event:blood_pressure (sensitive)" in said
        assert await tech.locator("ol.firings").count() == 0
        body = await tech.inner_text("body")
        assert "王芳" not in body and "151" not in body
        # a text that does not parse is not dry-run, and the card says so (it stayed silent)
        await tech.unroute("**/api/v1/ui/yaml")
        await tech.fill("#rule-text", "id: [bp-dry\n")
        await tech.click("#dry-run")
        await tech.locator("#dry-result [data-k=dry-needs-valid]").wait_for(timeout=T)
        assert "correct it first" in await tech.inner_text("#dry-result")
        assert await tech.locator("#rule-status.bad").count() == 1
        assert tech.errors == []

        viewer = await _page_as(browser, rt, "viewer")
        asked: list[str] = []
        viewer.on("request", lambda r: asked.append(r.url))
        await open_page(viewer, "/rules/bp-live")
        assert "blood_pressure" in await viewer.input_value("#rule-text")
        assert await viewer.locator("#dry-run").count() == 0
        assert await viewer.locator("#save-rule").count() == 0
        assert "rules permission" in await viewer.inner_text("#dry-run-needs-rules")
        assert not [u for u in asked if "/api/v1/rules/validate" in u or "dry-run" in u]
        assert viewer.errors == []
