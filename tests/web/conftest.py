"""Fixtures for the web UI tests: a real runtime with simulated devices and an HTTP client that
keeps the session cookie and sends the CSRF token like the UI's own JavaScript does."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.site import running_site

SITE = """
site: {id: web-test, name: 测试站点, timezone: Asia/Shanghai}
devices:
  - id: gate-north
    driver: sim
    points:
      - {name: loop_occupied, type: bool, signal: toggle, period: 2s, interval: 100ms}
      - {name: barrier_open, type: bool, signal: constant, value: false, writable: true}
      - {name: power_kw, signal: sine, min: 2, max: 9, period: 20s, interval: 100ms, unit: kW}
"""
PASSWORD = "correct horse battery"


def city_consumer_site(tmp_path: Path) -> str:
    """SITE with one declared pull consumer, `city-platform`, whose token is in a file (0600) in
    `tmp_path`."""
    token_file = tmp_path / "city.token"
    token_file.write_text("c" * 40)
    token_file.chmod(0o600)
    return SITE + f"consumers:\n  - {{id: city-platform, token_file: {token_file}}}\n"


async def token_get(base: str, path: str, token: str) -> tuple[int, Any]:
    """GET `path` from `base` with an API token (no session): the status and the JSON body."""
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(base + path) as r,
    ):
        return r.status, await r.json(content_type=None)


class Client:
    """An HTTP client for one browser-like session against the runtime's web server."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.csrf: str | None = None
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.http.close()

    async def request(self, method: str, path: str, **kw: Any) -> aiohttp.ClientResponse:
        headers = dict(kw.pop("headers", {}) or {})
        if method != "GET" and self.csrf and kw.pop("csrf", True):
            headers.setdefault("X-CSRF-Token", self.csrf)
        kw.setdefault("allow_redirects", False)
        resp = await self.http.request(method, self.base + path, headers=headers, **kw)
        await resp.read()
        return resp

    async def json(self, method: str, path: str, body: Any = None, expect: int = 200, **kw: Any) -> Any:
        resp = (
            await self.request(method, path, json=body, **kw)
            if body is not None
            else await self.request(method, path, **kw)
        )
        assert resp.status == expect, f"{method} {path}: {resp.status} {await resp.text()}"
        return await resp.json(content_type=None)

    async def login(self, name: str, password: str = PASSWORD, expect: int = 200) -> aiohttp.ClientResponse:
        resp = await self.request("POST", "/api/v1/auth/login", json={"name": name, "password": password})
        assert resp.status == expect, await resp.text()
        if resp.status == 200:
            self.csrf = (await resp.json())["csrf"]
        return resp


def setup_code(rt: Any) -> str:
    from edge.api.account_routes import ACCOUNTS_KEY

    return str(rt.web_runner.app[ACCOUNTS_KEY].setup_code.code)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Any]:
    async with running_site(tmp_path, SITE) as rt:
        yield rt


@pytest.fixture
async def client(site: Any) -> AsyncIterator[Client]:
    c = Client(f"http://127.0.0.1:{site.web_port}")
    try:
        yield c
    finally:
        await c.close()


async def set_up_admin(client: Client, rt: Any, name: str = "admin") -> Client:
    """`client`, logged in as the admin `name` created through first-run setup of runtime `rt`."""
    body = await client.json(
        "POST",
        "/api/v1/auth/setup",
        {"code": setup_code(rt), "name": name, "password": PASSWORD},
        expect=201,
    )
    client.csrf = body["csrf"]
    return client


@contextlib.asynccontextmanager
async def signed_in_admin(rt: Any, name: str = "admin") -> AsyncIterator[Client]:
    """A client of runtime `rt` logged in as the admin `name` from first-run setup, closed on exit."""
    c = Client(f"http://127.0.0.1:{rt.web_port}")
    try:
        yield await set_up_admin(c, rt, name)
    finally:
        await c.close()


@pytest.fixture
async def admin(site: Any, client: Client) -> Client:
    """The client, logged in as the admin created through first-run setup."""
    return await set_up_admin(client, site)


async def make_user(admin: Client, site: Any, name: str, role: str) -> Client:
    await admin.json("POST", "/api/v1/users", {"name": name, "role": role, "password": PASSWORD}, expect=201)
    c = Client(admin.base)
    await c.login(name)
    return c


async def clients_by_role(rt: Any) -> dict[str, Client]:
    """A logged-in client per role of runtime `rt`: "admin" (the account "boss", from first-run
    setup), "technician" and "viewer" (accounts named after their role). The caller closes them."""
    admin = await set_up_admin(Client(f"http://127.0.0.1:{rt.web_port}"), rt, "boss")
    clients = {"admin": admin}
    for role in ("technician", "viewer"):
        clients[role] = await make_user(admin, rt, role, role)
    return clients


@contextlib.asynccontextmanager
async def signed_in_roles(rt: Any) -> AsyncIterator[dict[str, Client]]:
    """`clients_by_role(rt)`, closed on exit."""
    clients = await clients_by_role(rt)
    try:
        yield clients
    finally:
        for c in clients.values():
            await c.close()
