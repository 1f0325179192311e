"""Where a login leads: only a path on this gateway is kept as `next`, by the server (login and
setup answer the checked value) and by login.js (it checks again what it follows), in Chromium;
and how the page shows a wait the throttle asks for."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from edge.api.accounts import PAIR_FREE_FAILURES
from tests.web.conftest import PASSWORD, Client
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser
from tests.web.test_login_throttle import Clock, clock

EVIL = [
    "/%09/evil.example",  # the page's own ?next=%2F%2509... once decoded by URLSearchParams
    "/\t/evil.example/phish",  # browsers drop the tab: //evil.example/phish
    "//evil.example",
    "/\\evil.example",
    "https://evil.example",
    "/\n/evil",
    "javascript:alert(1)",
    " /x",
    "/%2F/evil.example",
    "/x\u2028y",
    "",
]
GOOD = ["/devices/meter-b1?x=1", "/#/rules", "/devices/gate-north", "/"]

__all__ = ["browser", "clock"]  # fixtures, shared with the modules that define them


async def test_server_answers_only_same_origin_next(admin: Client) -> None:
    for value in [*EVIL, *GOOD, 7, None]:
        c = Client(admin.base)
        try:
            body = await c.json(
                "POST", "/api/v1/auth/login", {"name": "admin", "password": PASSWORD, "next": value}
            )
        finally:
            await c.close()
        assert body["next"] == (value if value in GOOD else "/"), repr(value)


async def test_login_page_follows_only_same_origin_next(admin: Client, clock: Clock, browser: Any) -> None:
    base = admin.base
    ctx = await browser.new_context(locale="en-US", base_url=base)
    followed: list[str] = []  # anything the page tried to load off the gateway

    async def only_the_gateway(route: Any) -> None:
        if route.request.url.startswith(base + "/"):
            await route.continue_()
        else:
            followed.append(route.request.url)
            await route.abort()

    forced: dict[str, str] = {}

    async def answer_next(route: Any) -> None:
        """Stands in for a server that returned `next` unchecked: login.js must still refuse it."""
        resp = await route.fetch()
        body = await resp.json()
        if "value" in forced and resp.status == 200:
            body["next"] = forced["value"]
        await route.fulfill(response=resp, json=body)

    await ctx.route("**/*", only_the_gateway)
    await ctx.route("**/api/v1/auth/login", answer_next)
    page = await ctx.new_page()
    try:
        cases = [(v, True) for v in [*EVIL, *GOOD]] + [("/\t/evil.example", False), ("/#/rules", False)]
        for i, (value, tamper) in enumerate(cases):
            clock.advance(60)  # many logins from one address: keep under its per-minute limit
            forced.clear()
            if i < len(cases) - 1:  # a fresh visitor; the last one logs in again over its session
                await ctx.clear_cookies()
            if tamper:
                forced["value"] = value
            await page.goto(f"/login?next={quote(value, safe='')}")
            await page.wait_for_selector("#login-form:not([hidden])", timeout=T)
            await page.fill("#login-name", "admin")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-submit")
            await page.wait_for_url(lambda url: "/login" not in url, timeout=T)
            expected = value if value in GOOD else "/"
            assert page.url == base + expected, (value, tamper, page.url)
        assert followed == []
    finally:
        await ctx.close()


async def test_login_page_shows_the_wait_and_holds_the_button(
    admin: Client, clock: Clock, browser: Any
) -> None:
    ctx = await browser.new_context(locale="en-US", base_url=admin.base)
    try:
        page = await ctx.new_page()
        await page.goto("/login")
        await page.wait_for_selector("#login-form:not([hidden])", timeout=T)
        await page.fill("#login-name", "admin")
        await page.fill("#login-password", "wrong password!")
        for _ in range(PAIR_FREE_FAILURES + 1):
            async with page.expect_response("**/api/v1/auth/login") as wrong:
                await page.click("#login-submit")
            assert (await wrong.value).status == 401
        async with page.expect_response("**/api/v1/auth/login") as refused:
            await page.click("#login-submit")
        assert (await refused.value).status == 429
        # the page shows the wait once it has read the answer's body, which can be after the
        # response event: judged when it renders, the button held at that same moment
        await page.wait_for_function(
            """() => document.querySelector('#message').innerText.includes('wait 1 s')
                     && document.querySelector('#login-submit').disabled""",
            timeout=T,
        )
        await page.wait_for_selector("#login-submit:not([disabled])", timeout=T)
    finally:
        await ctx.close()
