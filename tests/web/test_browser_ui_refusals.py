"""Pages in headless Chromium against a real gateway, for what a role may do and for refusals in
the reader's language: no retry button or empty rule editor for a viewer, dead letters paged, a
number the device page does not send, the audit log's coded values in words, a refused rule pack's
first problem with its line, and the sessions table after a user is disabled."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge import audit
from edge.sync import deadletters
from tests.support.site import running_site
from tests.web.conftest import PASSWORD
from tests.web.test_browser import T
from tests.web.test_browser_pages import (
    browser,
    logged_in_page,
    open_page,
    site_context,
    watched_page,
)

__all__ = ["browser"]


async def _csrf(page: Any) -> str:
    return str((await (await page.request.get("/api/v1/auth/state")).json())["csrf"])


async def _add_user(admin: Any, name: str, role: str) -> None:
    resp = await admin.request.post(
        "/api/v1/users",
        data={"name": name, "role": role, "password": PASSWORD},
        headers={"X-CSRF-Token": await _csrf(admin)},
    )
    assert resp.status == 201, await resp.text()


async def _page_as(browser: Any, rt: Any, name: str, locale: str = "en-US") -> Any:
    ctx = await site_context(browser, rt, locale)
    resp = await ctx.request.post("/api/v1/auth/login", data={"name": name, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    return await watched_page(ctx)


async def _rows(page: Any, selector: str) -> int:
    return int(await page.locator(selector).count())


async def test_dead_letters_page_back_and_a_viewer_gets_no_retry_nor_new_rule(
    tmp_path: Path, browser: Any
) -> None:
    from tests.sync.helpers import Receiver

    rx = Receiver()
    try:
        sink = {"id": "central", "type": "http", "url": rx.url, "batch": {"max_items": 50, "max_age": "50ms"}}
        async with running_site(tmp_path, {"upstream": [sink]}) as rt:
            # 130 records the receiver refused, in the gateway's dead-letter table
            now = time.time()
            for seq in range(1, 131):
                record = {
                    "type": "reading",
                    "seq": seq,
                    "ts": now,
                    "point": "dev.x",
                    "value": 1.0,
                    "quality": "good",
                }
                deadletters.add(rt.state, "central", seq, record, 400, "refused", privacy=0)
            admin = await logged_in_page(browser, rt)
            await _add_user(admin, "vera", "viewer")

            await open_page(admin, "/sync")
            assert await _rows(admin, "#dead-letters tr[data-dead]") == 100  # the newest page
            assert await admin.get_attribute("#dead-letters tr[data-dead]", "data-dead") == "130"
            assert "100" in await admin.inner_text("#dead-count")
            assert await _rows(admin, "#dead-letters button[data-retry]") == 100
            await admin.click("#dead-older")
            await admin.wait_for_selector('#dead-letters tr[data-dead="1"]', timeout=T)
            assert await _rows(admin, "#dead-letters tr[data-dead]") == 130
            assert await _rows(admin, "#dead-older") == 0  # nothing older left
            assert admin.errors == []

            # a viewer reads the dead letters but may not retry them (the API would say 403)
            viewer = await _page_as(browser, rt, "vera")
            await open_page(viewer, "/sync")
            assert await _rows(viewer, "#dead-letters tr[data-dead]") == 100
            assert await _rows(viewer, "#dead-letters button[data-retry]") == 0
            assert "Retry" not in await viewer.inner_text("#dead-letters")
            # nor create a rule: /rules/new says so instead of an empty read-only editor
            await open_page(viewer, "/rules/new")
            assert await _rows(viewer, "#rule-text") == 0
            assert "rules permission" in await viewer.inner_text("#new-needs-rules")
            assert viewer.errors == []
    finally:
        rx.stop()


WRITE_SITE = {
    "devices": [
        {
            "id": "pump-1",
            "driver": "sim",
            "points": [
                {
                    "name": "setpoint_kw",
                    "type": "float",
                    "signal": "constant",
                    "value": 1.0,
                    "writable": True,
                },
                {"name": "level_pct", "type": "int", "signal": "constant", "value": 5, "writable": True},
            ],
        }
    ]
}


async def _write(page: Any, point: str, text: str) -> str:
    """Type `text` into the write dialog of `point`; the page's answer."""
    await page.eval_on_selector("#write-result", "e => e.replaceChildren()")
    await page.click(f"button[data-write='{point}']")
    await page.fill("#write-value", text)
    await page.click("dialog [data-act=ok]")
    await page.wait_for_selector("#write-result > div", timeout=T)
    return str(await page.inner_text("#write-result"))


async def test_the_device_page_sends_only_finite_decimal_numbers(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, WRITE_SITE) as rt:
        admin = await logged_in_page(browser, rt)
        zh = await _page_as(browser, rt, "admin", "zh-CN")
        for page in (admin, zh):
            sent: list[str] = []
            page.on(
                "request", lambda r, sent=sent: sent.append(r.post_data or "") if "/write" in r.url else None
            )
            await open_page(page, "/devices/pump-1")
            await page.wait_for_selector("button[data-write='pump-1.setpoint_kw']", timeout=T)
            english = page is admin
            for point, text, words in (
                ("pump-1.setpoint_kw", "1e400", ("too large", "太大")),
                ("pump-1.setpoint_kw", "-1e400", ("too large", "太大")),
                ("pump-1.setpoint_kw", "0x10", ("not a decimal number", "不是十进制数")),
                ("pump-1.setpoint_kw", "abc", ("not a decimal number", "不是十进制数")),
                ("pump-1.level_pct", "3.7", ("not a whole number", "不是整数")),
            ):
                said = await _write(page, point, text)
                assert words[0 if english else 1] in said, (text, said)
                assert await _rows(page, "#write-result [data-k=write-refused]") == 1
            assert sent == []  # none of them left the browser
            said = await _write(page, "pump-1.setpoint_kw", " 12.5 ")
            assert sent == ['{"value":12.5}'] and await _rows(page, "#write-result .ok-box") == 1, said
            assert page.errors == []
        # an API client sending null for a number hears JSON's word for it, not Python's
        resp = await admin.request.post(
            "/api/v1/points/pump-1.setpoint_kw/write",
            data={"value": None},
            headers={"X-CSRF-Token": await _csrf(admin)},
        )
        reason = (await resp.json())["reason"]
        assert resp.status == 422 and reason.startswith("null is not a valid float"), reason


async def test_audit_details_read_in_the_pages_language(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, {}) as rt:
        # as the gateway records a live stream's reads when it ends, a rule created, a user added
        audit.record(
            rt.state,
            "boss",
            "read",
            "GET /api/v1/live",
            kind="user",
            classes={"sensitive": 11},
            span_s=2.8,
            connection_end=True,
        )
        audit.record(rt.state, "boss", "rule_create", "bin-full", version=1, rule_state="new")
        audit.record(rt.state, "boss", "user_add", "vera", role="viewer")
        await logged_in_page(browser, rt)
        zh = await _page_as(browser, rt, "admin", "zh-CN")
        await open_page(zh, "/audit")
        read = await zh.inner_text('tr[data-action="read"] td.desc')
        assert "敏感 11" in read and "{" not in read, read
        assert "span_s" not in read and "connection_end" not in read and "用户" in read, read
        assert "新建" in await zh.inner_text('tr[data-action="rule_create"] td.desc')
        assert "只读用户" in await zh.inner_text('tr[data-action="user_add"] td.desc')
        assert zh.errors == []


BAD_PACK = """rules:
  - id: Bad Id
    when: dev.x
    then: [{alert: hi}]
"""


async def test_a_refused_rule_pack_shows_its_first_problem_with_its_line(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, {}) as rt:
        page = await logged_in_page(browser, rt)
        await open_page(page, "/rules")
        pack = tmp_path / "pack.yaml"
        pack.write_text(BAD_PACK)
        await page.set_input_files("#pack-file", str(pack))
        first = page.locator("#rules-msg .pack-problems li").first
        await first.wait_for(timeout=T)
        said = await first.inner_text()
        assert said.startswith("Line 2:") and "Bad Id" in said, said
        assert "not imported" in await page.inner_text("#rules-msg")
        assert page.errors == []


async def test_disabling_a_user_ends_their_row_in_the_sessions_table(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, {}) as rt:
        admin = await logged_in_page(browser, rt)
        await _add_user(admin, "tom", "technician")
        await _page_as(browser, rt, "tom")  # tom is signed in elsewhere
        await open_page(admin, "/admin")
        await admin.wait_for_selector('tr[data-session-user="tom"]', timeout=T)
        await admin.click('tr[data-user="tom"] button:has-text("Disable")')
        await admin.wait_for_selector('tr[data-user="tom"] button:has-text("Enable")', timeout=T)
        await admin.wait_for_selector('tr[data-session-user="tom"]', state="detached", timeout=T)
        assert admin.errors == []
