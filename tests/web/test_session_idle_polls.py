"""A page's own periodic refresh is not the user's activity: the UI marks each one with the
`X-Edge-Background: 1` header and the server authenticates it without moving the session's last
use, so a tab left open on the Overview, the Devices list or the Alerts page (with its live
reload) still ends at the idle timeout; a request the user makes still moves it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from edge.api import accounts
from edge.model import Event
from tests.support.site import running_site
from tests.web.conftest import SITE, make_user, signed_in_admin
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, logged_in_page, open_page

__all__ = ["browser"]

MARK = {"X-Edge-Background": "1"}


def last_seen(rt: Any, user: str) -> float:
    with rt.state.lock:
        rows = rt.state.conn.execute("SELECT last_seen FROM sessions WHERE user=?", (user,)).fetchall()
    assert len(rows) == 1, rows
    return float(rows[0][0])


def age_session(rt: Any, user: str, seen_ago: float) -> float:
    """Set the user's session as last used `seen_ago` seconds ago; returns that time."""
    then = time.time() - seen_ago
    with rt.state.lock:
        rt.state.conn.execute("UPDATE sessions SET last_seen=? WHERE user=?", (then, user))
    return then


async def test_a_marked_get_does_not_move_last_seen_and_the_session_still_ends(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        alice = await make_user(boss, rt, "alice", "viewer")
        try:
            aged = age_session(rt, "alice", 3600.0)
            for path in ("/api/v1/status", "/api/v1/devices", "/api/v1/alerts/active", "/api/v1/events"):
                await alice.json("GET", path, headers=MARK)
            assert last_seen(rt, "alice") == aged
            # a session polled only by marked requests ends at its idle timeout
            age_session(rt, "alice", accounts.SESSION_IDLE + 1.0)
            assert (await alice.request("GET", "/api/v1/status", headers=MARK)).status == 401
        finally:
            await alice.close()


async def test_an_unmarked_get_and_a_marked_post_are_the_users_own(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        alice = await make_user(boss, rt, "alice", "viewer")
        try:
            aged = age_session(rt, "alice", 3600.0)
            await alice.json("GET", "/api/v1/status")
            assert last_seen(rt, "alice") > aged
            # the mark is only for a GET: a state-changing request is always the user's doing
            aged = age_session(rt, "alice", 3600.0)
            await alice.json("POST", "/api/v1/ui/yaml", {"data": {"a": 1}}, headers=MARK)
            assert last_seen(rt, "alice") > aged
        finally:
            await alice.close()


async def _refreshes_leave_the_session(
    page: Any, rt: Any, path: str, api_path: str, trigger: Any = None
) -> None:
    """Open `path`, age the session, wait for the page's next refresh of `api_path` (started by
    `trigger()` when given) and check it was marked and did not move the session's last use."""
    await open_page(page, path)
    seen: list[Any] = []
    page.on("request", lambda r: seen.append(r) if "/api/" in r.url else None)
    aged = age_session(rt, "admin", 3600.0)
    async with page.expect_response(lambda r: api_path in r.url, timeout=T) as answered:
        if trigger is not None:
            trigger()
    response = await answered.value
    assert response.status == 200
    # the refresh's other calls (the overview asks several at once) are answered too
    await asyncio.gather(*(r.response() for r in list(seen)))
    assert seen, "no refresh seen"
    for request in seen:
        assert (await request.all_headers()).get("x-edge-background") == "1", (path, request.url)
    assert last_seen(rt, "admin") == aged, path


async def test_every_periodic_refresh_of_the_ui_is_marked(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, SITE) as rt:
        page = await logged_in_page(browser, rt)
        await _refreshes_leave_the_session(page, rt, "/", "/api/v1/status")
        await _refreshes_leave_the_session(page, rt, "/devices", "/api/v1/devices")

        def new_event() -> None:
            rt.hub.publish_event(Event("alert", "bin-full", "warning", {"state": "fired", "message": "92%"}))

        await _refreshes_leave_the_session(page, rt, "/alerts", "/api/v1/events", new_event)
        # a reader's own click is still their activity
        aged = age_session(rt, "admin", 3600.0)
        async with page.expect_response(lambda r: "/api/v1/devices" in r.url, timeout=T):
            await page.click("#nav a[href='/devices']")
        assert last_seen(rt, "admin") > aged
        assert page.errors == []
