"""One request, one credential: a request with an Authorization header is authenticated by it alone
(the session cookie is ignored, a token that does not verify is a 401), and a cookie request's
Origin must match this server's scheme, host and port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import yaml

from edge.api.tokens import create_token
from tests.support.site import running_site
from tests.web.conftest import PASSWORD, SITE, Client, setup_code

NEW_USER = {"name": "mallory", "role": "admin", "password": PASSWORD}


async def users(admin: Client) -> list[str]:
    return [u["name"] for u in (await admin.json("GET", "/api/v1/users"))["users"]]


async def test_a_bearer_that_does_not_verify_is_401_even_with_a_valid_cookie(
    site: Any, admin: Client
) -> None:
    for header in ("Bearer garbage", "Bearer ", "Bearer ce_" + "x" * 43, "Basic YWRtaW46YWRtaW4="):
        auth = {"Authorization": header}
        resp = await admin.request("GET", "/api/v1/status", headers=auth)
        assert resp.status == 401, (header, resp.status)
        # the request a foreign page could make: no CSRF token, a foreign Origin, the admin's cookie
        resp = await admin.request(
            "POST",
            "/api/v1/users",
            json=NEW_USER,
            headers={**auth, "Origin": "http://evil.example"},
            csrf=False,
        )
        assert resp.status == 401, (header, resp.status, await resp.text())
        body = await resp.json(content_type=None)
        assert "Authorization header" in body["detail"]
    assert await users(admin) == ["admin"]
    # /healthz stays public whatever the caller sends
    assert (await admin.request("GET", "/healthz", headers={"Authorization": "Bearer garbage"})).status == 200


async def test_a_valid_bearer_with_a_cookie_acts_as_the_bearer_only(site: Any, admin: Client) -> None:
    reader = create_token(site.state, "dashboard", ["read"])
    writer = create_token(site.state, "barrier-script", ["read", "write"])
    foreign = {"Origin": "http://evil.example"}
    # the admin's cookie rides along, but the request is the read-only token's: no admin rights
    resp = await admin.request(
        "POST", "/api/v1/users", json=NEW_USER, headers={**foreign, "Authorization": f"Bearer {reader}"}
    )
    assert resp.status == 403, await resp.text()
    resp = await admin.request("GET", "/api/v1/tokens", headers={"Authorization": f"Bearer {reader}"})
    assert resp.status == 403
    assert await users(admin) == ["admin"]
    # a write token works from anywhere without CSRF, and the audit names the token, not the cookie
    resp = await admin.request(
        "POST",
        "/api/v1/points/gate-north.barrier_open/write",
        json={"value": True},
        headers={**foreign, "Authorization": f"Bearer {writer}"},
        csrf=False,
    )
    assert resp.status == 200, await resp.text()
    entries = (await admin.json("GET", "/api/v1/audit?action=point_write"))["entries"]
    assert [e["actor"] for e in entries] == ["barrier-script"]


async def test_an_origin_must_match_scheme_host_and_port(site: Any, admin: Client) -> None:
    path = "/api/v1/points/gate-north.barrier_open/write"
    port = site.web_port
    for origin in (
        f"https://127.0.0.1:{port}",  # the same host and port over another scheme
        f"http://127.0.0.1:{port + 1}",
        "http://127.0.0.1",
        f"http://127.0.0.2:{port}",
        f"ftp://127.0.0.1:{port}",
        "http://127.0.0.1:notaport",
        "null",
    ):
        resp = await admin.request("POST", path, json={"value": True}, headers={"Origin": origin})
        assert resp.status == 403, (origin, resp.status)
        assert "origin" in (await resp.text()).lower()
    assert (await admin.json("GET", "/api/v1/audit?action=point_write"))["entries"] == []
    resp = await admin.request(
        "POST", path, json={"value": True}, headers={"Origin": f"http://127.0.0.1:{port}"}
    )
    assert resp.status == 200, await resp.text()


async def test_login_with_a_bearer_header_is_refused_not_mixed(site: Any, admin: Client) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(
            admin.base + "/api/v1/auth/login",
            json={"name": "admin", "password": PASSWORD},
            headers={"Authorization": "Bearer garbage"},
        ) as r:
            assert r.status == 401
            assert "edge_session" not in r.cookies


async def test_over_tls_only_an_https_origin_is_this_gateway(tmp_path: Path) -> None:
    from edge.cli import main

    assert main(["tls", "selfsigned", "--out", str(tmp_path / "tls"), "--name", "127.0.0.1"]) == 0
    doc = yaml.safe_load(SITE)
    doc["web"] = {"tls_cert": str(tmp_path / "tls/edge.crt"), "tls_key": str(tmp_path / "tls/edge.key")}
    async with running_site(tmp_path, doc) as rt:
        base = f"https://127.0.0.1:{rt.web_port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            setup = {"code": setup_code(rt), "name": "admin", "password": PASSWORD}
            async with s.post(base + "/api/v1/auth/setup", json=setup, ssl=False) as r:
                assert r.status == 201
                csrf = (await r.json())["csrf"]
            path = base + "/api/v1/points/gate-north.barrier_open/write"
            for origin, expect in ((f"http://127.0.0.1:{rt.web_port}", 403), (base, 200)):
                headers = {"Origin": origin, "X-CSRF-Token": csrf}
                async with s.post(path, json={"value": True}, headers=headers, ssl=False) as r:
                    assert r.status == expect, (origin, await r.text())
