"""What the Users & tokens page reads, through a running site: the admin made at first setup has a
last login, and `GET /api/v1/tokens` lists the pull consumers the site file declares beside the
tokens made in the UI, without their secrets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.site import running_site
from tests.web.conftest import SITE, Client, signed_in_admin

CONSUMER_SECRET = "site-consumer-secret-value-0123456789"


async def test_the_admin_made_at_setup_has_a_last_login(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        before = time.time()
        async with signed_in_admin(rt) as admin:
            users = (await admin.json("GET", "/api/v1/users"))["users"]
            assert [u["name"] for u in users] == ["admin"]
            assert users[0]["last_login"] is not None and users[0]["last_login"] >= before - 1
            # a later login moves it on, through the same path
            first = users[0]["last_login"]
            again = Client(admin.base)
            try:
                await again.login("admin")
            finally:
                await again.close()
            users = (await admin.json("GET", "/api/v1/users"))["users"]
            assert users[0]["last_login"] >= first


async def test_tokens_list_the_site_files_consumers_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRID_PULL_TOKEN", CONSUMER_SECRET + "-grid")
    secret_file = tmp_path / "city.token"
    secret_file.write_text(CONSUMER_SECRET)
    secret_file.chmod(0o600)
    doc = SITE + (
        "consumers:\n"
        "  - {id: city, description: city platform, token_file: " + str(secret_file) + "}\n"
        "  - {id: grid, token_env: GRID_PULL_TOKEN, max_privacy: public}\n"
    )
    async with running_site(tmp_path, doc) as rt:
        async with signed_in_admin(rt) as admin:
            await admin.json("POST", "/api/v1/tokens", {"name": "dashboard", "scopes": ["read"]}, expect=201)
            resp = await admin.request("GET", "/api/v1/tokens")
            text = await resp.text()
            assert resp.status == 200, text
            body = await resp.json()
            assert [t["name"] for t in body["tokens"]] == ["dashboard"]
            assert body["consumers"] == [
                {
                    "id": "city",
                    "description": "city platform",
                    "max_privacy": "personal",
                    "token_from": "file",
                    "pseudonymised": False,
                    "scopes": ["pull"],
                    "source": "site",
                },
                {
                    "id": "grid",
                    "description": "",
                    "max_privacy": "public",
                    "token_from": "env",
                    "pseudonymised": False,
                    "scopes": ["pull"],
                    "source": "site",
                },
            ]
            assert CONSUMER_SECRET not in text and str(secret_file) not in text
