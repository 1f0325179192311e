"""An API token acts on the authority of the user who made it (or, made with a token, that
token's owner's). When that user is demoted, the tokens holding a scope the new role could not
give are revoked; when the user is disabled or deleted, all of them. Each revocation is audited and
the user-changing answer lists them. Tokens other users or the console made are untouched, and a
change that changes nothing is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from edge import audit
from edge.api.tokens import create_token, list_tokens
from tests.support.site import running_site
from tests.web.conftest import PASSWORD, SITE, Client, make_user, signed_in_admin


async def _bearer(base: str, token: str, method: str, path: str, body: Any = None) -> int:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.request(method, base + path, json=body) as r,
    ):
        return r.status


async def _token(client: Client, name: str, scopes: list[str], consumer: str | None = None) -> str:
    body = await client.json(
        "POST", "/api/v1/tokens", {"name": name, "scopes": scopes, "consumer": consumer}, expect=201
    )
    return str(body["token"])


def _live(rt: Any) -> set[str]:
    return {t["name"] for t in list_tokens(rt.state) if t["revoked"] is None}


async def test_a_demoted_disabled_or_deleted_admin_loses_the_tokens_beyond_their_role(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        base = boss.base
        mallory = await make_user(boss, rt, "mallory", "admin")
        try:
            laptop = await _token(mallory, "backup-laptop", ["admin", "read"])
            scraper = await _token(mallory, "scraper", ["read"])
            bench = await _token(mallory, "bench", ["read", "write", "rules"])
            await _token(mallory, "feed", ["pull"], consumer="feed")
            # a token made with a token is on the same user's authority
            async with (
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {laptop}"}) as http,
                http.post(base + "/api/v1/tokens", json={"name": "chained", "scopes": ["admin"]}) as r,
            ):
                assert r.status == 201
                chained = (await r.json())["token"]
        finally:
            await mallory.close()
        machine = await _token(boss, "machine", ["pull"], consumer="city")
        console = create_token(rt.state, "console", ["admin"], created_by="cli")

        # demoted to technician: the admin and pull tokens go, read/write/rules stay
        answer = await boss.json("PATCH", "/api/v1/users/mallory", {"role": "technician"})
        assert answer["tokens_revoked"] == 3, answer
        assert {t["name"] for t in answer["revoked_tokens"]} == {"backup-laptop", "chained", "feed"}
        assert _live(rt) == {"scraper", "bench", "machine", "console"}
        for token in (laptop, chained):
            assert await _bearer(base, token, "PATCH", "/api/v1/users/mallory", {"role": "admin"}) == 401
        revokes = audit.entries(rt.state, 100, action="token_revoke")
        assert {e["detail"]["name"] for e in revokes} == {"backup-laptop", "chained", "feed"}
        assert {e["detail"]["reason"] for e in revokes} == {"its owner's role is now technician"}
        (update,) = audit.entries(rt.state, 1, action="user_update")
        assert update["detail"]["tokens_revoked"] == 3

        # down to viewer: the write/rules token goes, the read token stays
        answer = await boss.json("PATCH", "/api/v1/users/mallory", {"role": "viewer"})
        assert [t["name"] for t in answer["revoked_tokens"]] == ["bench"], answer
        assert await _bearer(base, bench, "GET", "/api/v1/status") == 401
        assert await _bearer(base, scraper, "GET", "/api/v1/status") == 200

        # deleted: every token left goes, and none of them can bring the user back
        answer = await boss.json("DELETE", "/api/v1/users/mallory")
        assert answer["tokens_revoked"] == 1 and answer["revoked_tokens"][0]["name"] == "scraper", answer
        assert await _bearer(base, scraper, "GET", "/api/v1/status") == 401
        add = {"name": "mallory", "role": "admin", "password": PASSWORD}
        assert await _bearer(base, laptop, "POST", "/api/v1/users", add) == 401
        # other users' and the console's tokens were never touched
        assert _live(rt) == {"machine", "console"}
        assert await _bearer(base, machine, "GET", "/api/v1/stream?limit=1") == 200
        assert await _bearer(base, console, "GET", "/api/v1/users") == 200


async def test_disabling_a_user_revokes_all_their_tokens(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        other = await make_user(boss, rt, "other", "admin")
        try:
            token = await _token(other, "reader", ["read"])
        finally:
            await other.close()
        answer = await boss.json("PATCH", "/api/v1/users/other", {"disabled": True})
        assert answer["tokens_revoked"] == 1, answer
        assert await _bearer(boss.base, token, "GET", "/api/v1/status") == 401
        (entry,) = audit.entries(rt.state, 1, action="token_revoke")
        assert entry["detail"]["reason"] == "its owner was disabled", entry
        # enabled again: the token stays revoked
        answer = await boss.json("PATCH", "/api/v1/users/other", {"disabled": False})
        assert answer["tokens_revoked"] == 0
        assert await _bearer(boss.base, token, "GET", "/api/v1/status") == 401


async def test_a_change_of_nothing_is_refused(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        await boss.json(
            "POST", "/api/v1/users", {"name": "tech", "role": "technician", "password": PASSWORD}, expect=201
        )
        before = audit.entries(rt.state, 1000)
        for body in ({}, {"role": None}, {"unlock": False}, {"role": None, "password": None}):
            problem = await boss.json("PATCH", "/api/v1/users/tech", body, expect=422)
            assert problem["title"] == "Nothing to change", problem
        assert audit.entries(rt.state, 1000) == before
        (user,) = [u for u in (await boss.json("GET", "/api/v1/users"))["users"] if u["name"] == "tech"]
        assert user["role"] == "technician" and not user["disabled"]
