"""A commissioning read that fails says why, in both languages: the problem's message args carry
the driver's reason (`reason`, the same text as `detail`), and the device page shows it after
"The device did not answer" / "设备没有应答" for Read now and for the raw register read."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from edge.api.problem import problem
from tests.support.site import running_site
from tests.web.conftest import PASSWORD, signed_in_admin
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, open_page, site_context, watched_page

__all__ = ["browser"]

I18N = Path(__file__).resolve().parents[2] / "edge/web/static/i18n"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _site(port: int) -> dict[str, Any]:
    return {
        "devices": [
            {
                "id": "gate-south",
                "driver": "modbus",
                "connection": {"transport": "tcp", "host": "127.0.0.1", "port": port},
                "unit": 1,
                "poll": "1h",
                "retries": 0,
                "points": [{"name": "loop_occupied", "table": "coil", "address": 0, "type": "bool"}],
            }
        ]
    }


def test_a_reason_title_passes_its_detail_as_the_reason_arg() -> None:
    for title, key in (
        ("Device did not answer", "msg.commission.no_answer"),
        ("Read failed", "msg.commission.read_failed"),
    ):
        body = json.loads(problem(502, title, "cannot connect to 127.0.0.1:1 (tcp)").body)  # type: ignore[arg-type]
        assert body["message_key"] == key
        assert body["args"] == {"reason": "cannot connect to 127.0.0.1:1 (tcp)"}
        for lang in ("en", "zh-CN"):
            catalogue = json.loads((I18N / f"messages.{lang}.json").read_text(encoding="utf-8"))
            assert "{reason}" in catalogue[key], (lang, key)
    # another title's detail stays out of its args
    assert json.loads(problem(404, "Unknown point", "no point 'x'").body)["args"] == {}  # type: ignore[arg-type]


async def test_the_api_answers_the_drivers_reason_as_an_arg(tmp_path: Path) -> None:
    port = _closed_port()
    async with running_site(tmp_path, _site(port)) as rt, signed_in_admin(rt) as c:
        resp = await c.request("POST", "/api/v1/commission/read", json={"point": "gate-south.loop_occupied"})
        body = await resp.json(content_type=None)
        assert resp.status == 502 and body["message_key"] == "msg.commission.no_answer", body
        assert body["args"]["reason"] == body["detail"] and f"127.0.0.1:{port}" in body["detail"]


async def test_the_device_page_shows_the_reason_in_both_languages(tmp_path: Path, browser: Any) -> None:
    port = _closed_port()
    async with running_site(tmp_path, _site(port)) as rt:
        async with signed_in_admin(rt):
            pass  # the first admin exists; the pages log in as their own
        for locale, words, failed in (
            ("en-US", "The device did not answer: ", "The read failed: "),
            ("zh-CN", "设备没有应答：", "读取失败："),
        ):
            ctx = await site_context(browser, rt, locale)
            resp = await ctx.request.post("/api/v1/auth/login", data={"name": "admin", "password": PASSWORD})
            assert resp.status == 200, await resp.text()
            page = await watched_page(ctx)
            await open_page(page, "/devices/gate-south")
            await page.click("#commission-read")
            await page.wait_for_selector("#commission-result .error", timeout=T)
            text = await page.inner_text("#commission-result")
            assert text.startswith(words) and f"127.0.0.1:{port}" in text, text
            await page.click(".probe button.primary")
            await page.wait_for_selector("#probe-result .error", timeout=T)
            probe = await page.inner_text("#probe-result")
            assert probe.startswith(failed) and f"cannot connect to 127.0.0.1:{port}" in probe, probe
            assert page.errors == []
            await ctx.close()
