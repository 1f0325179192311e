"""An open live stream (`/api/v1/live`) ends once the credential that opened it is gone or may
see less: a revoked token, a logout, a password change, a demotion. It says why in a `closed`
event; what is sent up to then is what the stream's class allowed, and nothing is sent after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from edge.api.auth import ROLE_SCOPES, Principal
from edge.model import Reading
from edge.web import live
from tests.support.site import running_site
from tests.web.conftest import PASSWORD, Client, make_user, signed_in_admin

SITE = """
site: {id: live-revoke}
devices:
  - id: kiosk-1
    driver: sim
    points:
      - {name: last_systolic, signal: constant, value: 120, interval: 1h, privacy: sensitive}
"""
POINT = "kiosk-1.last_systolic"
STREAM = "/api/v1/live?device=kiosk-1&events=0"
WAIT_S = 10.0  # a test's wait for the stream: far beyond a re-check


@pytest.fixture(autouse=True)
def quick_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "RECHECK_S", 0.05)


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """The stream's events as (name, decoded data), keepalives skipped, until it ends."""
    name, data = "message", b""
    async for line in resp.content:
        line = line.rstrip(b"\r\n")
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            data = line[6:]
        elif not line and data:
            yield name, orjson.loads(data)
            name, data = "message", b""


async def next_event(events: AsyncIterator[tuple[str, Any]], wanted: str) -> Any:
    """The data of the next `wanted` event, failing on a `closed` one or the stream's end."""
    async with aiohttp.helpers.ceil_timeout(WAIT_S):
        async for name, data in events:
            if name == wanted:
                return data
            assert name != "closed", f"the stream closed ({data}) while waiting for {wanted}"
    raise AssertionError(f"the stream ended while waiting for {wanted}")


async def reading_seen(rt: Any, events: AsyncIterator[tuple[str, Any]], value: float) -> dict[str, Any]:
    """Journal a reading of the sensitive point and return it as the stream sends it."""
    rt.hub.ingest([Reading(rt.clock(), POINT, value)])
    while True:
        records = await next_event(events, "records")
        for rec in records:
            if rec.get("point") == POINT and rec["ts"] and rec.get("value") in (value, None):
                return dict(rec)


async def closed_reason(rt: Any, events: AsyncIterator[tuple[str, Any]], resp: aiohttp.ClientResponse) -> str:
    """The `closed` event's reason; records sent before it must be what the stream's class allowed,
    and after it the stream is at its end (a reading journaled then is not sent)."""
    async with aiohttp.helpers.ceil_timeout(WAIT_S):
        async for name, data in events:
            if name == "closed":
                reason = str(data["reason"])
                break
        else:
            raise AssertionError("the stream ended without a closed event")
    rt.hub.ingest([Reading(rt.clock(), POINT, 999.0)])
    await rt.journal.flush()
    async with aiohttp.helpers.ceil_timeout(WAIT_S):
        rest = await resp.content.read()
    assert b"999" not in rest and resp.content.at_eof()
    return reason


async def test_a_revoked_token_ends_its_open_stream(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        made = await boss.json(
            "POST", "/api/v1/tokens", {"name": "wall", "scopes": ["read", "admin"]}, expect=201
        )
        tid = next(
            t["id"] for t in (await boss.json("GET", "/api/v1/tokens"))["tokens"] if t["name"] == "wall"
        )
        auth = {"Authorization": f"Bearer {made['token']}"}
        async with aiohttp.ClientSession() as http, http.get(boss.base + STREAM, headers=auth) as resp:
            assert resp.status == 200
            events = sse_events(resp)
            await next_event(events, "hello")
            assert (await reading_seen(rt, events, 187.0))["value"] == 187.0
            await boss.json("DELETE", f"/api/v1/tokens/{tid}")
            assert await closed_reason(rt, events, resp) == "revoked"
            again = await http.get(boss.base + STREAM, headers=auth)
            assert again.status == 401
            again.close()


@pytest.mark.parametrize("how", ["logout", "password", "demotion", "session ended"])
async def test_the_end_of_a_session_ends_its_open_stream(tmp_path: Path, how: str) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        alice = await make_user(boss, rt, "alice", "admin")
        try:
            async with alice.http.get(alice.base + STREAM) as resp:
                assert resp.status == 200
                events = sse_events(resp)
                await next_event(events, "hello")
                assert (await reading_seen(rt, events, 187.0))["value"] == 187.0
                if how == "logout":
                    await alice.json("POST", "/api/v1/auth/logout", {})
                elif how == "password":
                    await alice.json(
                        "POST", "/api/v1/auth/password", {"old": PASSWORD, "new": "another long passphrase"}
                    )
                elif how == "demotion":
                    await boss.json("PATCH", "/api/v1/users/alice", {"role": "viewer"})
                else:
                    listed = await boss.json("GET", "/api/v1/sessions?user=alice")
                    await boss.json("DELETE", f"/api/v1/sessions/{listed['sessions'][0]['id']}")
                assert await closed_reason(rt, events, resp) == "revoked"
            if how == "demotion":  # signed in again: a stream at the viewer's class
                viewer = Client(alice.base)
                try:
                    await viewer.login("alice")
                    async with viewer.http.get(viewer.base + STREAM) as resp:
                        events = sse_events(resp)
                        await next_event(events, "hello")
                        seen = await reading_seen(rt, events, 188.0)
                        assert seen["value"] is None and seen["redacted"] == "sensitive"
                finally:
                    await viewer.close()
        finally:
            await alice.close()


def user(role: str, name: str = "alice") -> Principal:
    return Principal("user", name, ROLE_SCOPES[role], role=role, session="s")


def test_a_stream_goes_on_at_its_class_and_ends_below_it() -> None:
    admin = user("admin")
    assert live.ended_by(admin, admin) is None
    assert live.ended_by(user("technician"), user("admin")) is None  # promoted: it serves what it did
    assert live.ended_by(admin, user("technician")) == "demoted"
    assert live.ended_by(user("technician"), user("viewer")) == "demoted"
    assert live.ended_by(admin, None) == "revoked"
    assert live.ended_by(admin, user("admin", "mallory")) == "revoked"
    token = Principal("token", "wall", frozenset({"read", "admin"}))
    assert live.ended_by(token, Principal("token", "wall", frozenset({"write"}))) == "revoked"
    assert live.ended_by(token, Principal("token", "wall", frozenset({"read"}))) == "demoted"
