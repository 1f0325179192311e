"""A flood of logins from one address does not grow the audit log by one entry each: the logins
the throttle refuses before any password check (the per-source limit, an attempt already being
verified, a slowed name) are counted and written as one `login_refused` entry per source and
window, naming the address and the count; a wrong password stays one `login_failed` entry of its
own. A window still open when the gateway stops is written then, so no refusal goes unrecorded;
past a cap of sources at once, the rest are counted together."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from edge import audit
from edge.api import refused_logins
from edge.api.account_routes import ACCOUNT_WORK_KEY
from edge.api.accounts import LoginRefused
from edge.state import StateDB
from tests.support.site import running_site
from tests.sync.helpers import wait_for
from tests.web.conftest import SITE, signed_in_admin

ATTEMPTS = 120


async def _flood(base: str, n: int) -> dict[int, int]:
    """`n` wrong logins at distinct names from this address, eight at a time; statuses counted."""
    codes: dict[int, int] = {}
    gate = asyncio.Semaphore(8)
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> None:
            async with (
                gate,
                http.post(
                    base + "/api/v1/auth/login", json={"name": f"guess-{i}", "password": "not it at all"}
                ) as r,
            ):
                codes[r.status] = codes.get(r.status, 0) + 1

        await asyncio.gather(*(one(i) for i in range(n)))
    return codes


def _entries(state: StateDB, action: str) -> list[dict[str, Any]]:
    return audit.entries(state, 1000, action=action)


async def test_a_login_flood_writes_one_entry_per_window_and_every_wrong_password(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        async with signed_in_admin(rt):
            pass
        state_path = rt.state.path
        before = len(audit.entries(rt.state, 1000))
        codes = await _flood(f"http://127.0.0.1:{rt.web_port}", ATTEMPTS)
        assert set(codes) == {401, 429} and sum(codes.values()) == ATTEMPTS, codes
        # the wrong passwords are audited one by one, the throttle's refusals not yet (window open)
        assert len(_entries(rt.state, "login_failed")) == codes[401]
        assert _entries(rt.state, "login_refused") == []
        assert len(audit.entries(rt.state, 1000)) == before + codes[401]
        refused = rt.web_runner.app[ACCOUNT_WORK_KEY].refused
        assert refused.by_reason["wrong_password"] == codes[401]
        assert refused.total == ATTEMPTS
    # the gateway stopped: the open window was written, one entry with the count
    state = StateDB(state_path)
    try:
        (entry,) = _entries(state, "login_refused")
        assert entry["target"] == "127.0.0.1" and entry["detail"]["address"] == "127.0.0.1", entry
        assert entry["detail"]["count"] == codes[429], entry
        assert sum(entry["detail"]["reasons"].values()) == codes[429], entry
        assert len(entry["detail"]["names"]) <= 3, entry
        assert len(_entries(state, "login_failed")) == codes[401]
        assert audit.verify(state).ok
    finally:
        state.close()


async def test_a_window_is_written_when_it_closes(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        refused = rt.web_runner.app[ACCOUNT_WORK_KEY].refused
        refused.window = 0.2
        codes = await _flood(f"http://127.0.0.1:{rt.web_port}", 40)
        assert codes.get(429), codes

        def written() -> int:
            return sum(e["detail"]["count"] for e in _entries(rt.state, "login_refused"))

        await wait_for(lambda: written() == codes[429], 10, "every refusal in a closed window's entry")
        assert not refused.open


def test_sources_past_the_cap_are_counted_together(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(refused_logins, "REFUSAL_SOURCES", 2)
    state = StateDB(str(tmp_path / "state.db"))
    try:
        refused = refused_logins.RefusedLogins(state)
        limit = LoginRefused(429, "too many attempts from this address: wait 9 s", 9, reason="address_limit")
        for i in range(5):
            for _ in range(3):
                refused.note(f"10.0.0.{i}", "admin", limit)
        refused.note("10.0.0.9", "admin", LoginRefused(401, "wrong user name or password"))
        refused.flush()
        entries = {e["target"]: e["detail"] for e in _entries(state, "login_refused")}
        assert set(entries) == {"10.0.0.0", "10.0.0.1", "*"}, entries
        assert entries["10.0.0.0"]["count"] == entries["10.0.0.1"]["count"] == 3
        assert entries["*"]["count"] == 9 and entries["*"]["sources"] == 3, entries
        assert refused.total == 16 and refused.by_reason["wrong_password"] == 1
        assert not refused.open
    finally:
        state.close()
