"""A full disk answers clearly and keeps monitoring working: on a gateway whose data directory
is a small tmpfs filled up by another process, a read-scope token still reads status and metrics
(its last use is a note, not the authentication: every token lookup wrote it, so a full disk
answered 500 to every token), a write that cannot be stored (a login's audit entry) is 507 "Disk
full" saying nothing was changed, not 500, and both work again once space returns."""

from __future__ import annotations

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
    with open(path, "wb") as f, contextlib.suppress(OSError):
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
        finally:
            filler.unlink()
        async with http.post(
            base + "/api/v1/auth/login", json={"name": "admin", "password": PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
