"""The Users page changes a user's role in headless Chromium: an admin makes a technician a viewer,
whose session ends and whose next write, logged in again, the gateway refuses; and the gateway's
refusal to demote the last admin is shown next to that admin's selector, with nothing changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.site import running_site
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, logged_in_page, open_page, site_context

__all__ = ["browser"]  # the fixture shared with the module it comes from

TECH = {"name": "tech", "password": "tech-password-ok", "role": "technician"}

RULE = """\
id: bin-full-{n}
when: bin-*.fill_pct
if: value >= 85
then:
  - alert: "{{device}} full"
"""


async def _log_in(ctx: Any) -> str:
    """Log the technician in on `ctx`; its CSRF token."""
    resp = await ctx.request.post(
        "/api/v1/auth/login", data={"name": TECH["name"], "password": TECH["password"]}
    )
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["csrf"])


async def _write_rule(ctx: Any, csrf: str, n: int) -> int:
    """A write of the technician's (a new rule); the status the gateway answered."""
    resp = await ctx.request.post(
        "/api/v1/rules",
        data=RULE.format(n=n).encode(),
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/yaml"},
    )
    return int(resp.status)


async def test_an_admin_makes_a_technician_a_viewer_and_the_last_admin_is_refused(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        page = await logged_in_page(browser, rt)
        csrf = (await (await page.request.get("/api/v1/auth/state")).json())["csrf"]
        added = await page.request.post("/api/v1/users", data=TECH, headers={"X-CSRF-Token": csrf})
        assert added.status == 201, await added.text()
        tech = await site_context(browser, rt)
        tech_csrf = await _log_in(tech)
        assert await _write_rule(tech, tech_csrf, 1) == 201

        await open_page(page, "/admin")
        assert await page.input_value("select[data-role-of=tech]") == "technician"
        await page.select_option("select[data-role-of=tech]", "viewer")
        await page.wait_for_selector("#user-msg .ok-box", timeout=T)
        assert "tech is now viewer" in await page.inner_text("#user-msg")
        assert await page.input_value("select[data-role-of=tech]") == "viewer"

        # the technician's session ended with the change; logged in again, a viewer may not write
        assert await _write_rule(tech, tech_csrf, 2) == 401
        assert await _write_rule(tech, await _log_in(tech), 3) == 403
        names = [r["id"] for r in (await (await page.request.get("/api/v1/rules")).json())["rules"]]
        assert names == ["bin-full-1"]

        # the only admin may not make itself a technician: said next to its selector, kept admin
        async def accept(dialog: Any) -> None:
            await dialog.accept()

        page.on("dialog", accept)
        await page.select_option("select[data-role-of=admin]", "technician")
        await page.wait_for_selector("[data-role-refusal=admin] .error", timeout=T)
        assert "last admin" in await page.inner_text("[data-role-refusal=admin]")
        assert await page.input_value("select[data-role-of=admin]") == "admin"
        me = await (await page.request.get("/api/v1/auth/state")).json()
        assert me["user"]["name"] == "admin" and me["user"]["role"] == "admin"  # still logged in
        users = (await (await page.request.get("/api/v1/users")).json())["users"]
        assert {u["name"]: u["role"] for u in users} == {"admin": "admin", "tech": "viewer"}
        assert page.errors == []
        await tech.close()


async def test_an_admin_who_changes_their_own_role_is_asked_first_and_logs_in_again(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        page = await logged_in_page(browser, rt)
        csrf = (await (await page.request.get("/api/v1/auth/state")).json())["csrf"]
        other = {"name": "ops", "password": "ops-password-ok", "role": "admin"}
        added = await page.request.post("/api/v1/users", data=other, headers={"X-CSRF-Token": csrf})
        assert added.status == 201, await added.text()
        await open_page(page, "/admin")
        asked: list[str] = []

        async def answer(dialog: Any) -> None:
            asked.append(dialog.message)
            await (dialog.dismiss() if len(asked) == 1 else dialog.accept())

        page.on("dialog", answer)
        # cancelled: nothing sent, the selector shows the role kept
        await page.select_option("select[data-role-of=admin]", "technician")
        await page.wait_for_function(
            "() => document.querySelector('select[data-role-of=admin]').value === 'admin'", timeout=T
        )
        assert "ends this session" in asked[0]
        assert (await page.request.get("/api/v1/auth/state")).status == 200
        users = (await (await page.request.get("/api/v1/users")).json())["users"]
        assert {u["name"]: u["role"] for u in users}["admin"] == "admin"

        # confirmed: stored, this session ended, the page goes to the login
        await page.select_option("select[data-role-of=admin]", "technician")
        await page.wait_for_selector("#login-form:not([hidden])", timeout=T)
        me = await (await page.request.get("/api/v1/auth/state")).json()
        assert me["user"] is None, me
        login = await page.request.post(
            "/api/v1/auth/login", data={"name": "ops", "password": other["password"]}
        )
        assert login.status == 200
        users = (await (await page.request.get("/api/v1/users")).json())["users"]
        assert {u["name"]: u["role"] for u in users} == {"admin": "technician", "ops": "admin"}
        assert len(asked) == 2 and page.errors == []
