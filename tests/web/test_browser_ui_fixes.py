"""Pages in headless Chromium against a real gateway: a form's earlier refusal goes once the
reader types again (the Users form, the write dialog), an admin who sets their own password on
the Users page stays logged in (as with the header's password dialog), a long value or point
name never makes a page scroll sideways, and the audit log leaves out the fields recorded
empty (null)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge import audit
from tests.support.site import running_site
from tests.web.conftest import PASSWORD
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, logged_in_page, open_page, site_context, watched_page

__all__ = ["browser"]

LONG_VALUE = "SN-" + "0123456789ABCDEF" * 60  # one word, nearly a thousand characters
LONG_NAME = "cabinet_door_contact_of_the_north_east_stairwell_fire_escape_on_level_three"

SITE = {
    "devices": [
        {
            "id": "pump-1",
            "driver": "sim",
            "points": [
                {
                    "name": "serial",
                    "type": "str",
                    "signal": "constant",
                    "value": LONG_VALUE,
                    "writable": True,
                },
                {
                    "name": "setpoint_kw",
                    "type": "float",
                    "signal": "constant",
                    "value": 1.0,
                    "writable": True,
                },
                {"name": LONG_NAME, "type": "bool", "signal": "constant", "value": False},
            ],
        }
    ]
}


async def _scroll_width(page: Any) -> list[int]:
    return list(await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]"))


async def test_a_refusal_goes_once_the_reader_types_again(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, SITE) as rt:
        page = await logged_in_page(browser, rt)
        await open_page(page, "/admin")
        form = "#add-user"
        await page.fill(f"{form} input[name=name]", "tech1")
        await page.fill(f"{form} input[name=password]", "techpass1234")
        await page.click(f"{form} button")
        await page.wait_for_selector("#users tr[data-user=tech1]", timeout=T)
        # the same name again: the server refuses it
        await page.fill(f"{form} input[name=name]", "tech1")
        await page.fill(f"{form} input[name=password]", "techpass1234")
        await page.click(f"{form} button")
        await page.wait_for_selector("#users .error", timeout=T)
        # a short password: the browser blocks the submit, and the earlier refusal is gone
        await page.fill(f"{form} input[name=name]", "tech2")
        await page.fill(f"{form} input[name=password]", "short")
        await page.click(f"{form} button")
        assert await page.locator("#users .error").count() == 0
        # and a submit blocked without typing first (the field left empty) clears it too
        await page.fill(f"{form} input[name=name]", "tech1")
        await page.fill(f"{form} input[name=password]", "techpass1234")
        await page.click(f"{form} button")
        await page.wait_for_selector("#users .error", timeout=T)
        await page.eval_on_selector(f"{form} input[name=password]", "e => { e.value = ''; }")
        await page.click(f"{form} button")
        assert await page.locator("#users .error").count() == 0

        # the write dialog: a refused number, then an empty value the browser blocks
        await open_page(page, "/devices/pump-1")
        await page.click("button[data-write='pump-1.setpoint_kw']")
        await page.fill("#write-value", "12,5")
        await page.click("dialog [data-act=ok]")
        await page.wait_for_selector("#write-result .error", timeout=T)
        await page.click("button[data-write='pump-1.setpoint_kw']")
        await page.click("dialog [data-act=ok]")  # empty: required, the dialog stays open
        assert await page.locator("dialog[open]").count() == 1
        assert await page.inner_text("#write-result") == ""
        await page.fill("#write-value", "3")
        assert await page.inner_text("#write-result") == ""
        await page.click("dialog [data-act=ok]")
        await page.wait_for_selector("#write-result .ok-box", timeout=T)
        assert page.errors == []


async def test_an_admin_setting_their_own_password_on_the_users_page_stays_logged_in(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, SITE) as rt:
        page = await logged_in_page(browser, rt)
        await open_page(page, "/admin")
        await page.click("tr[data-user=admin] button:has-text('Set password')")
        # one's own password: the current one is asked, as in the header's dialog
        await page.fill("dialog[open] input[name=old]", PASSWORD)
        await page.fill("dialog[open] input[name=new]", "a new password 2")
        await page.click("dialog[open] button[data-act=ok]")
        await page.wait_for_selector("#users .ok-box", timeout=T)
        assert "Password changed" in await page.inner_text("#users .ok-box")
        # still logged in, with a working CSRF token: the next change goes through
        await page.fill("#add-user input[name=name]", "tech9")
        await page.fill("#add-user input[name=password]", "techpass1234")
        await page.click("#add-user button")
        await page.wait_for_selector("#users tr[data-user=tech9]", timeout=T)
        assert page.url.endswith("/admin")
        # the new password is the one that logs in
        ctx = await site_context(browser, rt)
        bad = await ctx.request.post("/api/v1/auth/login", data={"name": "admin", "password": PASSWORD})
        good = await ctx.request.post(
            "/api/v1/auth/login", data={"name": "admin", "password": "a new password 2"}
        )
        assert (bad.status, good.status) == (401, 200)
        await ctx.close()
        assert page.errors == []


async def test_a_long_value_or_point_name_never_scrolls_the_page_sideways(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, SITE) as rt:
        admin = await logged_in_page(browser, rt)
        await admin.close()
        for viewport in ({"width": 1280, "height": 900}, {"width": 390, "height": 844}):
            ctx = await browser.new_context(
                locale="en-US", viewport=viewport, base_url=f"http://127.0.0.1:{rt.web_port}", bypass_csp=True
            )
            resp = await ctx.request.post("/api/v1/auth/login", data={"name": "admin", "password": PASSWORD})
            assert resp.status == 200
            page = await watched_page(ctx)
            await open_page(page, "/devices/pump-1")
            await page.wait_for_selector("td.value[data-point='pump-1.serial']", timeout=T)
            assert LONG_VALUE in await page.inner_text("td.value[data-point='pump-1.serial']")
            await page.select_option("#commission-point", f"pump-1.{LONG_NAME}")
            width, inner = await _scroll_width(page)
            assert width <= inner, (viewport, width, inner)
            assert page.errors == []
            await ctx.close()


async def test_the_audit_page_leaves_out_fields_recorded_empty(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, SITE) as rt:
        page = await logged_in_page(browser, rt)
        # a raw register read records neither a quality nor a duration
        audit.record(rt.state, "admin", "commission_read", "pump-1", ok=True, quality=None, duration_ms=None)
        await open_page(page, "/audit")
        row = page.locator("tr[data-action=commission_read]")
        await row.wait_for(timeout=T)
        text = await row.inner_text()
        assert "null" not in text and "took" not in text.lower() and "quality" not in text.lower(), text
        assert page.errors == []
