"""An open live stream asks its credential again every few seconds, and that look is not the
user's activity: a session whose user only keeps a live page open still ends at its idle
timeout (its `last_seen` is not moved by the re-check), while a request the user makes does
move it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.api import accounts
from edge.web import live
from tests.support.site import running_site
from tests.web.conftest import make_user, signed_in_admin
from tests.web.test_live_revoke import SITE, STREAM, WAIT_S, next_event, sse_events


@pytest.fixture(autouse=True)
def quick_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "RECHECK_S", 0.05)


def last_seen(rt: Any, user: str) -> float:
    with rt.state.lock:
        row = rt.state.conn.execute("SELECT last_seen FROM sessions WHERE user=?", (user,)).fetchone()
    return float(row[0])


def age_session(rt: Any, user: str, seen_ago: float) -> float:
    """Set the user's session as last used `seen_ago` seconds ago; returns that time."""
    then = time.time() - seen_ago
    with rt.state.lock:
        rt.state.conn.execute("UPDATE sessions SET last_seen=? WHERE user=?", (then, user))
    return then


async def test_a_session_with_only_an_open_live_stream_ends_at_its_idle_timeout(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        alice = await make_user(boss, rt, "alice", "viewer")
        try:
            async with alice.http.get(alice.base + STREAM) as resp:
                assert resp.status == 200
                events = sse_events(resp)
                await next_event(events, "hello")
                # idle for all but a second of its timeout, far longer than the minute after
                # which a request moves last_seen: every re-check from now on would move it
                aged = age_session(rt, "alice", accounts.SESSION_IDLE - 1.0)
                async with aiohttp.helpers.ceil_timeout(WAIT_S):
                    async for name, data in events:
                        if name == "closed":
                            assert data["reason"] == "revoked"
                            break
                    else:
                        raise AssertionError("the stream ended without a closed event")
            with rt.state.lock:
                left = rt.state.conn.execute("SELECT last_seen FROM sessions WHERE user='alice'").fetchone()
            assert left is None or left[0] == aged  # ended, or still as the user left it
            again = await alice.request("GET", "/api/v1/status")
            assert again.status == 401
        finally:
            await alice.close()


async def test_a_request_the_user_makes_still_moves_last_seen(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        alice = await make_user(boss, rt, "alice", "viewer")
        try:
            aged = age_session(rt, "alice", 3600.0)
            await alice.json("GET", "/api/v1/status")
            assert last_seen(rt, "alice") > aged
        finally:
            await alice.close()
