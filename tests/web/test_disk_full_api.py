"""A full disk answers clearly and keeps monitoring working: on a gateway whose data directory
is a small tmpfs filled up by another process, a read-scope token still reads status and metrics
(its last use is a note, not the authentication: every token lookup wrote it, so a full disk
answered 500 to every token), a write that cannot be stored (a login's audit entry) is 507 "Disk
full" saying nothing was changed, not 500 — a wrong password and a rule edit too — and both work
again once space returns."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest

from edge.api.tokens import create_token
from tests.store.test_disk_full import small_disk
from tests.support.site import running_site
from tests.web.conftest import PASSWORD, Client, set_up_admin

__all__ = ["small_disk"]  # the fixture
pytestmark = pytest.mark.root


def fill(path: Path) -> None:
    """Write zeros to `path` until the filesystem has no room left."""
    with contextlib.suppress(OSError), open(path, "wb") as f:  # closing can fail too
        while True:
            f.write(bytes(256 * 1024))
            f.flush()


async def test_a_full_disk_answers_507_and_tokens_still_read(small_disk: Path) -> None:
    doc = {"devices": [{"id": "m", "driver": "sim", "points": [{"name": "p", "interval": "1h"}]}]}
    async with running_site(small_disk, doc) as rt, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{rt.web_port}"
        admin = await set_up_admin(Client(base), rt)
        await admin.close()
        token = create_token(rt.state, "prometheus", ["read"])
        auth = {"Authorization": f"Bearer {token}"}
        rules_auth = {"Authorization": f"Bearer {create_token(rt.state, 'tech', ['read', 'rules'])}"}
        # the state DB's WAL holds no reusable room: SQLite writes a transaction into the WAL's
        # checkpointed frames without asking the disk for more, so a full disk would fail no write
        assert await asyncio.to_thread(rt.state.give_wal_back)
        filler = small_disk / "filler"
        fill(filler)
        try:
            for path in ("/api/v1/status", "/metrics"):
                async with http.get(base + path, headers=auth) as resp:
                    assert resp.status == 200, (path, await resp.text())
            async with http.post(
                base + "/api/v1/auth/login", json={"name": "admin", "password": PASSWORD}
            ) as resp:
                said = await resp.text()
                assert resp.status == 507 and "nothing was changed" in said, said
            # a wrong password answers as the right one does: a 500 for one and a 507 for the
            # other told whether a password was right (SQLite had rolled back the failed COMMIT
            # of the failed-login count; the ROLLBACK after it raised and was not seen as a full disk)
            for _ in range(3):
                async with http.post(
                    base + "/api/v1/auth/login", json={"name": "admin", "password": "not-the-password"}
                ) as resp:
                    said = await resp.text()
                    assert resp.status == 507 and "nothing was changed" in said, said
            # a rule that cannot be stored: 507, and the rules are as they were
            rule = {"id": "full-disk", "when": "m.p", "if": "value > 1"}
            async with http.post(base + "/api/v1/rules", json=rule, headers=rules_auth) as resp:
                said = await resp.text()
                assert resp.status == 507 and "nothing was changed" in said, said
            assert "full-disk" not in rt.components["rules"].engine.rules
        finally:
            filler.unlink()
        async with http.post(
            base + "/api/v1/auth/login", json={"name": "admin", "password": PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
