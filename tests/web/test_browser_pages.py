"""Pages driven in headless Chromium against an in-process runtime, for flows the demo site does
not have: a push sink with a dead letter (retry button) and a Modbus device (raw register probe)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge.model import Reading
from tests.support.site import running_site
from tests.support.tools import require_tool
from tests.web.conftest import PASSWORD, setup_code
from tests.web.test_browser import ARGS, T


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    require_tool("chromium", "Debian package chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def site_context(browser: Any, rt: Any, locale: str = "en-US") -> Any:
    """A browser context of its own (cookies, language) for runtime `rt`'s web UI."""
    return await browser.new_context(
        locale=locale, base_url=f"http://127.0.0.1:{rt.web_port}", bypass_csp=True
    )


async def watched_page(ctx: Any) -> Any:
    """A new page of `ctx`; the script errors it throws collect in `page.errors`."""
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    return page


async def logged_in_page(browser: Any, rt: Any) -> Any:
    ctx = await site_context(browser, rt)
    resp = await ctx.request.post(
        "/api/v1/auth/setup", data={"code": setup_code(rt), "name": "admin", "password": PASSWORD}
    )
    assert resp.status == 201
    return await watched_page(ctx)


def one_sim_device(device_id: str, point: dict[str, Any]) -> dict[str, Any]:
    """A site of one simulated device with one point."""
    return {"devices": [{"id": device_id, "driver": "sim", "points": [point]}]}


async def open_page(page: Any, path: str) -> None:
    """Navigate and wait until the page's module has rendered: app.js sets #view's data-ready once
    render() returned, after the page's last fetch (an element seen earlier may be one of several
    that arrive one after the other)."""
    await page.goto(path)
    await page.wait_for_function(
        "p => document.getElementById('view')?.dataset.ready === p", arg=path, timeout=T
    )


async def test_sync_page_shows_dead_letter_and_retries_it(tmp_path: Path, browser: Any) -> None:
    from tests.sync.helpers import Receiver, wait_for

    rx = Receiver("--poison", "dev.poison")
    try:
        sink = {
            "id": "central",
            "type": "http",
            "url": rx.url,
            "batch": {"max_items": 50, "max_age": "50ms"},
            "retry": {"initial": "50ms", "max": "500ms"},
        }
        async with running_site(tmp_path, {"upstream": [sink]}) as rt:
            t = time.time()
            rt.hub.ingest([Reading(t, "dev.ok", 1.0), Reading(t + 0.001, "dev.poison", -1.0)])
            await rt.journal.flush()
            s = rt.components["sync"].sinks["central"]
            await wait_for(lambda: s.dead_letters == 1, 20, "the poison record to be dead-lettered")
            page = await logged_in_page(browser, rt)
            await open_page(page, "/sync")
            await page.wait_for_selector('tr[data-sink="central"]', timeout=T)
            row = await page.inner_text("#dead-letters")
            assert "400" in row and "poison" in row and "dev.poison" in row
            # its class, which says whether it is deleted at a retention: a public point's is not
            assert await page.inner_text("#dead-letters [data-k=class]") == "public"
            # still poisonous: the retry is refused and the UI says so
            await page.click("#dead-letters button[data-retry]")
            await page.wait_for_selector("#dead-letters .error", timeout=T)
            await rx.control(poison=[])
            await page.click("#dead-letters button[data-retry]")
            await page.wait_for_selector("text=delivered on retry", timeout=T)
            assert page.errors == []
    finally:
        rx.stop()


async def test_modbus_probe_on_the_device_page(tmp_path: Path, browser: Any) -> None:
    from tests.modbus.servers import probe_site, registers_for, tcp_server

    regs = registers_for({"holding": [(0x10, "float32", 230.25, "CDAB")]})
    async with tcp_server({5: {"holding": regs["holding"]}}) as srv:
        doc = probe_site(srv.port)
        async with running_site(tmp_path, doc) as rt:
            page = await logged_in_page(browser, rt)
            await open_page(page, "/devices/meter-b9")
            await page.wait_for_selector(".probe", timeout=T)
            # the form starts at the point's own table and address, written as the datasheet does
            assert await page.input_value(".probe input[name=address]") == "0x0010"
            assert await page.input_value(".probe select[name=type]") == "float32"
            await page.fill(".probe input[name=address]", "0x10")
            await page.click(".probe button")
            cell = page.locator('#probe-result td[data-order="CDAB"]')
            await cell.first.wait_for(timeout=T)
            assert await cell.first.inner_text() == "230.25"  # every decoding as the device gives it
            # and the point itself, test-read through the driver: rounded like a voltage (1 decimal)
            await page.click("#commission-read")
            await page.wait_for_selector("[data-k=commission-value]", timeout=T)
            assert await page.inner_text("[data-k=commission-value]") == "230.3"
            # an address the device does not map: the exception code in words, in the page's language
            await page.fill(".probe input[name=address]", "0x400")
            await page.click(".probe button")
            refused = page.locator("#probe-result .error")
            await refused.wait_for(timeout=T)
            assert await refused.get_attribute("data-exception") == "2"
            assert "no register at this address" in await refused.inner_text()
            assert page.errors == []


async def test_rule_versions_diff_restore_and_disable(tmp_path: Path, browser: Any) -> None:
    doc = one_sim_device(
        "bin-east-1",
        {"name": "fill_pct", "signal": "ramp", "min": 0, "max": 100, "period": "1h", "interval": "1s"},
    )
    async with running_site(tmp_path, doc) as rt:
        assert "rules" in rt.components  # a site runs its rules engine unless told not to
        page = await logged_in_page(browser, rt)
        csrf = (await (await page.request.get("/api/v1/auth/state")).json())["csrf"]
        rule = {
            "id": "bin-full",
            "name": "Bin full",
            "when": "bin-east-1.fill_pct",
            "if": "value > 85",
            "then": [{"alert": "full"}],
        }
        hdr = {"X-CSRF-Token": csrf}
        assert (await page.request.post("/api/v1/rules", data=rule, headers=hdr)).status == 201
        rule["if"] = "value > 90"
        assert (await page.request.put("/api/v1/rules/bin-full", data=rule, headers=hdr)).status == 200
        await open_page(page, "/rules/bin-full")
        await page.wait_for_selector("ul.versions li", timeout=T)
        assert "value > 90" in await page.input_value("#rule-text")
        # diff version 1 against the editor: the changed condition shows as - and +
        await page.locator("ul.versions li", has_text="v1").locator("button").first.click()
        await page.wait_for_function(
            "() => document.getElementById('version-diff').textContent.includes('+ ')", timeout=T
        )
        diff = await page.inner_text("#version-diff")
        assert "- if: value > 85" in diff and "+ if: value > 90" in diff
        await page.locator("ul.versions li", has_text="v1").locator("button").nth(1).click()
        await page.wait_for_function(
            "() => document.getElementById('rule-text')?.value.includes('value > 85')", timeout=T
        )
        got = await (await page.request.get("/api/v1/rules/bin-full")).json()
        assert got["rule"]["if"] == "value > 85" and got["version"] == 3
        await open_page(page, "/rules")
        await page.locator('tr[data-rule="bin-full"] button').click()
        await page.wait_for_selector('tr[data-rule="bin-full"] .badge-muted', timeout=T)
        assert (await (await page.request.get("/api/v1/rules/bin-full")).json())["enabled"] is False
        assert page.errors == []


async def test_overview_components_are_translated_rows(tmp_path: Path, browser: Any) -> None:
    sink = {"id": "central", "type": "http", "url": "http://127.0.0.1:9/ingest", "retry": {"initial": "50ms"}}
    async with running_site(tmp_path, {"upstream": [sink]}) as rt:
        assert "rules" in rt.components  # a site runs its rules engine unless told not to
        page = await logged_in_page(browser, rt)
        csrf = (await (await page.request.get("/api/v1/auth/state")).json())["csrf"]
        rule = {"id": "hot", "name": "Hot", "when": "dev.t", "if": "value > 1", "then": [{"alert": "hot"}]}
        resp = await page.request.post("/api/v1/rules", data=rule, headers={"X-CSRF-Token": csrf})
        assert resp.status == 201
        await open_page(page, "/")
        await page.wait_for_selector("[data-k=comp-rules-enabled]", timeout=T)
        assert await page.inner_text("[data-k=comp-rules-enabled]") == "1 of 1 rules"
        assert await page.inner_text('[data-component="rules"] h3') == "Rules engine"
        sink_row = page.locator("[data-k=comp-sync-sink-central]")
        assert "waiting" in await sink_row.inner_text()
        # no raw field names from the status document
        assert "enabled:" not in await page.inner_text('[data-component="rules"]')
        assert page.errors == []


async def test_commissioning_read_says_it_came_from_the_device(tmp_path: Path, browser: Any) -> None:
    doc = one_sim_device(
        "meter-a1", {"name": "voltage", "signal": "constant", "value": 231.5, "interval": "1s", "unit": "V"}
    )
    async with running_site(tmp_path, doc) as rt:
        page = await logged_in_page(browser, rt)
        await open_page(page, "/devices/meter-a1")
        await page.click("#commission-read", timeout=T)
        source = page.locator("[data-k=commission-source]")
        await source.wait_for(timeout=T)
        assert await source.get_attribute("data-source") == "device"
        assert "read from the device just now" in await source.inner_text()
        assert await page.inner_text("[data-k=commission-value]") == "231.5"
        assert page.errors == []
        # the same read in Chinese, in a browser whose language is zh-CN
        zh = await site_context(browser, rt, "zh-CN")
        resp = await zh.request.post("/api/v1/auth/login", data={"name": "admin", "password": PASSWORD})
        assert resp.status == 200
        zpage = await zh.new_page()
        await open_page(zpage, "/devices/meter-a1")
        await zpage.click("#commission-read", timeout=T)
        zsource = zpage.locator("[data-k=commission-source]")
        await zsource.wait_for(timeout=T)
        assert "刚从设备读取" in await zsource.inner_text()
        await zh.close()


async def test_rule_pack_import_from_the_rules_page(tmp_path: Path, browser: Any) -> None:
    pack = tmp_path / "bin-pack.yaml"
    pack.write_text(
        "rules:\n"
        "  - id: bin-overflow\n"
        "    name: 垃圾桶满 Bin overflowing\n"
        "    when: bin-east-1.fill_pct\n"
        "    if: value > 95\n"
        "    then:\n"
        "      - alert: overflowing\n",
        "utf-8",
    )
    async with running_site(tmp_path, {}) as rt:
        assert "rules" in rt.components  # a site runs its rules engine unless told not to
        page = await logged_in_page(browser, rt)
        await open_page(page, "/rules")
        await page.wait_for_selector("#new-rule", timeout=T)
        await page.set_input_files("#pack-file", str(pack))
        await page.wait_for_selector("#rules-msg .ok-box", timeout=T)
        row = page.locator('tr[data-rule="bin-overflow"]')
        await row.wait_for(timeout=T)  # the page reloads with the imported rule
        assert "Bin overflowing" in await row.inner_text()
        await open_page(page, "/audit")
        entry = page.locator('tr[data-action="rule_import"]', has_text="bin-overflow")
        await entry.wait_for(timeout=T)
        assert "admin" in await entry.inner_text()
        assert page.errors == []


async def test_admin_ends_another_session_on_the_users_page(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, {}) as rt:
        page = await logged_in_page(browser, rt)
        other = await browser.new_context(base_url=f"http://127.0.0.1:{rt.web_port}")
        login = await other.request.post("/api/v1/auth/login", data={"name": "admin", "password": PASSWORD})
        assert login.status == 200
        await open_page(page, "/admin")
        await page.wait_for_selector("#sessions tbody tr", timeout=T)
        rows = page.locator("#sessions tbody tr")
        assert await rows.count() == 2
        await page.locator("#sessions tbody tr button").click()
        await page.wait_for_function(
            "() => document.querySelectorAll('#sessions tbody tr').length === 1", timeout=T
        )
        assert "this session" in await page.inner_text("#sessions tbody tr")
        assert (await other.request.get("/api/v1/status")).status == 401
        await other.close()
        assert page.errors == []
