"""A rule's delete, enable/disable and restore in headless Chromium when a colleague changed it
meanwhile: each is made against the version the page shows, so a stale page is refused, changes
nothing, says who changed the rule and when, shows it as it is now, and the same button then does
it knowingly; on the editor and on the Rules list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.site import running_site
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, logged_in_page, open_page
from tests.web.test_browser_rule_conflict import TEXT, _api, _second_session, _stored

__all__ = ["browser"]  # the fixture shared with the module it comes from


async def _accept_confirms(page: Any) -> None:
    """Answer OK to every confirm() of `page` (Delete asks first)."""

    async def accept(dialog: Any) -> None:
        await dialog.accept()

    page.on("dialog", accept)


async def _save_over(page: Any, old: str, new: str) -> None:
    """A colleague's edit, saved from their own editor."""
    await page.fill("#rule-text", (await page.input_value("#rule-text")).replace(old, new))
    await page.wait_for_selector("#rule-status.ok", timeout=T)
    await page.evaluate("document.querySelector('#save-msg').replaceChildren()")  # an earlier save's
    await page.click("#save-rule")
    await page.wait_for_selector("#save-msg .ok-box", timeout=T)


async def _toggle_reads(page: Any, label: str) -> None:
    """Wait until the editor, drawn again after its toggle, offers `label`."""
    await page.wait_for_function(
        """l => document.getElementById('view')?.dataset.ready === '/rules/bin-full'
            && document.getElementById('toggle-rule')?.textContent === l""",
        arg=label,
        timeout=T,
    )


async def test_a_stale_editor_is_told_before_it_enables_restores_or_deletes_a_rule_changed_since(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        a = await logged_in_page(browser, rt)
        b = await _second_session(browser, rt)
        await _accept_confirms(a)
        assert (await _api(a, "POST", "/api/v1/rules", data=TEXT.encode()))[0] == 201
        assert (await _api(a, "POST", "/api/v1/rules/bin-full/disable"))[0] == 200
        await open_page(a, "/rules/bin-full")  # version 2, disabled
        await open_page(b, "/rules/bin-full")
        assert await a.inner_text("#toggle-rule") == "Enable"

        # the colleague enables it, then disables it again after an edit
        await b.click("#toggle-rule")
        await _toggle_reads(b, "Disable")
        await _save_over(b, "for: 1m", "for: 2m")
        await b.click("#toggle-rule")
        await _toggle_reads(b, "Enable")
        assert (await _stored(b))["version"] == 5

        # the stale page showed version 2, disabled: its Enable is refused, though the rule is
        # disabled again, as it is not the rule it showed
        await a.click("#toggle-rule")
        await a.wait_for_selector("#action-conflict", timeout=T)
        said = await a.inner_text("#action-conflict")
        assert "admin changed this rule" in said and "(version 5); this page showed version 2" in said, said
        assert "It is disabled now." in said
        stored = await _stored(a)
        assert stored["version"] == 5 and stored["enabled"] is False
        assert "for: 2m" in await a.input_value("#rule-text")  # the rule as it is now
        assert "v5 · " in await a.inner_text("#rule-versions")  # with its versions since

        # restoring version 1 over a change made since is refused the same way
        await _save_over(b, "for: 2m", "for: 3m")
        await a.click("[data-restore='1']")
        await a.wait_for_function(
            "() => document.getElementById('action-conflict')?.textContent.includes('(version 6)')",
            timeout=T,
        )
        assert "this page showed version 5" in await a.inner_text("#action-conflict")
        stored = await _stored(a)
        assert stored["version"] == 6 and "for: 3m" in stored["text"]
        assert "for: 3m" in await a.input_value("#rule-text")

        # the colleague enables it; this page's Delete is refused and says it is enabled now
        await open_page(b, "/rules/bin-full")
        await b.click("#toggle-rule")
        await _toggle_reads(b, "Disable")
        await a.click("#delete-rule")
        await a.wait_for_function(
            "() => document.getElementById('action-conflict')?.textContent.includes('(version 7)')",
            timeout=T,
        )
        assert "It is enabled now." in await a.inner_text("#action-conflict")
        assert await a.inner_text("#toggle-rule") == "Disable"
        assert (await _stored(a))["version"] == 7

        # asked again, knowingly: made against version 7, it goes through
        await a.click("#delete-rule")
        await a.wait_for_url("**/rules", timeout=T)
        assert (await a.request.get("/api/v1/rules/bin-full")).status == 404
        assert a.errors == [] and b.errors == []


async def test_the_rules_list_does_not_disable_a_rule_changed_since_without_saying_so(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        a = await logged_in_page(browser, rt)
        b = await _second_session(browser, rt)
        assert (await _api(a, "POST", "/api/v1/rules", data=TEXT.encode()))[0] == 201
        await open_page(a, "/rules")
        row = "tr[data-rule=bin-full]"
        assert await a.inner_text(f"{row} [data-act=toggle]") == "Disable"

        tuned = (await _stored(b))["text"].replace("for: 1m", "for: 5m")
        assert (await _api(b, "PUT", "/api/v1/rules/bin-full", data=tuned.encode()))[0] == 200

        await a.click(f"{row} [data-act=toggle]")
        await a.wait_for_selector("#rule-conflict", timeout=T)
        said = await a.inner_text("#rule-conflict")
        assert (
            "bin-full not changed: admin changed it" in said
            and "(version 2); this list showed version 1" in said
        )
        stored = await _stored(a)
        assert stored["version"] == 2 and stored["enabled"] is True and "for: 5m" in stored["text"]
        assert await a.inner_text(f"{row} td:nth-child(5)") == "2"  # the row as the rule is now

        # again, knowingly: made against version 2
        await a.click(f"{row} [data-act=toggle]")
        await a.wait_for_function(
            "() => document.querySelector('tr[data-rule=bin-full] [data-act=toggle]')?.textContent === 'Enable'",
            timeout=T,
        )
        stored = await _stored(a)
        assert stored["version"] == 3 and stored["enabled"] is False
        assert a.errors == [] and b.errors == []
