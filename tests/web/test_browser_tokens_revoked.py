"""A user's demotion, disabling or deletion revokes API tokens they made: the Users page says how
many ("N API tokens revoked", in headless Chromium) and draws the tokens again, revoked; a change
that revoked none says nothing of tokens. The OpenAPI document describes what these answers, the
token routes and a redacted audit log really carry, field by field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema_rs

from edge.api.tokens import create_token
from tests.support.site import running_site
from tests.web.conftest import PASSWORD, Client, city_consumer_site, make_user, signed_in_admin
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, logged_in_page, open_page, site_context, watched_page

__all__ = ["browser"]  # the fixture shared with the module it comes from

OPS = {"name": "ops", "password": "ops-password-ok", "role": "admin"}
NIGHT = {"name": "night", "password": "night-password-ok", "role": "admin"}


async def _tokens_of(browser: Any, rt: Any, user: dict[str, str], scopes: list[list[str]]) -> None:
    """Log `user` in on a context of its own and make one API token per entry of `scopes`."""
    ctx = await site_context(browser, rt)
    try:
        login = await ctx.request.post(
            "/api/v1/auth/login", data={"name": user["name"], "password": user["password"]}
        )
        assert login.status == 200, await login.text()
        csrf = (await login.json())["csrf"]
        for i, held in enumerate(scopes):
            made = await ctx.request.post(
                "/api/v1/tokens",
                data={"name": f"{user['name']}-{i}", "scopes": held},
                headers={"X-CSRF-Token": csrf},
            )
            assert made.status == 201, await made.text()
    finally:
        await ctx.close()


async def test_the_users_page_says_how_many_tokens_a_change_revoked(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        page = await logged_in_page(browser, rt)
        csrf = (await (await page.request.get("/api/v1/auth/state")).json())["csrf"]
        for user in (OPS, NIGHT):
            added = await page.request.post("/api/v1/users", data=user, headers={"X-CSRF-Token": csrf})
            assert added.status == 201, await added.text()
        await _tokens_of(browser, rt, OPS, [["admin"], ["read"]])
        await _tokens_of(browser, rt, NIGHT, [["read", "write"], ["admin"]])

        async def accept(dialog: Any) -> None:
            await dialog.accept()

        page.on("dialog", accept)
        await open_page(page, "/admin")
        note = "#user-msg [data-tokens-revoked]"

        # a technician keeps read: the admin token goes, the read one stays
        await page.select_option("select[data-role-of=ops]", "technician")
        await page.wait_for_selector(note, timeout=T)
        said = await page.inner_text("#user-msg")
        assert "ops is now technician" in said and "1 API token revoked" in said, said
        await page.wait_for_selector("#tokens tr.revoked", timeout=T)
        assert await page.locator("#tokens tr.revoked").count() == 1
        assert "ops-0" in await page.inner_text("#tokens tr.revoked")

        # disabling revokes all of the user's tokens
        await page.locator("tr[data-user=night] button", has_text="Disable").click()
        await page.wait_for_selector(f"{note}[data-tokens-revoked='2']", timeout=T)
        assert "2 API tokens revoked" in await page.inner_text("#user-msg")
        await page.wait_for_function(
            "() => document.querySelectorAll('#tokens tr.revoked').length === 3", timeout=T
        )

        # enabling brings none back and revokes none: nothing is said of tokens
        await page.locator("tr[data-user=night] button", has_text="Enable").click()
        await page.wait_for_selector("tr[data-user=night] button:has-text('Disable')", timeout=T)
        assert await page.locator(note).count() == 0
        assert "revoked" not in await page.inner_text("#user-msg")

        # deleting revokes what is left (the technician's read token)
        await page.locator("tr[data-user=ops] button", has_text="Delete").click()
        await page.wait_for_selector(f"{note}[data-tokens-revoked='1']", timeout=T)
        assert "1 API token revoked" in await page.inner_text("#user-msg")
        assert await page.locator("tr[data-user=ops]").count() == 0
        await page.wait_for_function(
            "() => document.querySelectorAll('#tokens tr.revoked').length === 4", timeout=T
        )
        assert page.errors == []


async def test_the_chinese_users_page_says_so_too(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        page = await logged_in_page(browser, rt)
        csrf = (await (await page.request.get("/api/v1/auth/state")).json())["csrf"]
        added = await page.request.post("/api/v1/users", data=OPS, headers={"X-CSRF-Token": csrf})
        assert added.status == 201, await added.text()
        await _tokens_of(browser, rt, OPS, [["admin"]])
        zh = await site_context(browser, rt, locale="zh-CN")
        login = await zh.request.post("/api/v1/auth/login", data={"name": "admin", "password": PASSWORD})
        assert login.status == 200, await login.text()
        page = await watched_page(zh)
        await open_page(page, "/admin")
        await page.select_option("select[data-role-of=ops]", "viewer")
        await page.wait_for_selector("#user-msg [data-tokens-revoked]", timeout=T)
        assert "已吊销 1 个 API 令牌" in await page.inner_text("#user-msg")
        assert page.errors == []
        await zh.close()


def _answer_schema(doc: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][path][method]["responses"][status]["content"]["application/json"][
        "schema"
    ]
    return schema


def conforms(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """`value` is valid against `schema` of `doc` and holds no field the schema does not name."""
    errors = [
        e.message
        for e in jsonschema_rs.validator_for({**schema, "components": doc["components"]}).iter_errors(value)
    ]
    assert not errors, (errors, value)
    if isinstance(value, dict) and "properties" in schema:
        assert set(value) <= set(schema["properties"]), sorted(set(value) - set(schema["properties"]))


async def test_the_document_describes_what_these_routes_answer(tmp_path: Path) -> None:
    site = city_consumer_site(tmp_path)
    async with running_site(tmp_path, site) as rt, signed_in_admin(rt) as admin:
        doc = await admin.json("GET", "/api/v1/openapi.json")
        ops = await make_user(admin, rt, "ops", "admin")
        try:
            made = await ops.json(
                "POST",
                "/api/v1/tokens",
                {"name": "feed", "scopes": ["pull"], "consumer": "city-platfrom"},
                expect=201,
            )
            created = _answer_schema(doc, "/api/v1/tokens", "post", "201")
            conforms(doc, created, made)
            assert {"consumer", "consumer_declared", "warning", "declared_consumers"} <= set(made), made
            conforms(
                doc,
                created,
                await ops.json(
                    "POST", "/api/v1/tokens", {"name": "all", "scopes": ["admin", "read"]}, expect=201
                ),
            )
        finally:
            await ops.close()
        create_token(rt.state, "console", ["read"])  # owned by nobody: owner null

        listed = await admin.json("GET", "/api/v1/tokens")
        conforms(doc, _answer_schema(doc, "/api/v1/tokens", "get", "200"), listed)
        token_schema = _answer_schema(doc, "/api/v1/tokens", "get", "200")["properties"]["tokens"]["items"]
        for row in listed["tokens"]:
            conforms(doc, token_schema, row)
        assert {t["name"]: t["owner"] for t in listed["tokens"]} == {
            "feed": "ops",
            "all": "ops",
            "console": None,
        }

        demoted = await admin.json("PATCH", "/api/v1/users/ops", {"role": "technician"})
        assert demoted["tokens_revoked"] == 2, demoted
        conforms(doc, _answer_schema(doc, "/api/v1/users/{name}", "patch", "200"), demoted)
        for row in demoted["revoked_tokens"]:
            conforms(
                doc,
                _answer_schema(doc, "/api/v1/users/{name}", "patch", "200")["properties"]["revoked_tokens"][
                    "items"
                ],
                row,
            )
        nothing = await admin.request("PATCH", "/api/v1/users/ops", json={})
        assert nothing.status == 422 and (await nothing.json())["title"] == "Nothing to change"
        assert "422" in doc["paths"]["/api/v1/users/{name}"]["patch"]["responses"]
        assert "Nothing to change" in doc["paths"]["/api/v1/users/{name}"]["patch"]["description"]
        deleted = await admin.json("DELETE", "/api/v1/users/ops")
        conforms(doc, _answer_schema(doc, "/api/v1/users/{name}", "delete", "200"), deleted)

        # a write token reads the audit log redacted, and may not filter it by actor
        writer = Client(admin.base)
        writer.http.headers["Authorization"] = f"Bearer {create_token(rt.state, 'writer', ['read', 'write'])}"
        try:
            entries = (await writer.json("GET", "/api/v1/audit?limit=50"))["entries"]
            entry_schema = _answer_schema(doc, "/api/v1/audit", "get", "200")["properties"]["entries"][
                "items"
            ]
            assert entries and all(e["redacted"] is True for e in entries), entries
            for entry in entries:
                conforms(doc, entry_schema, entry)
            refused = await writer.request("GET", "/api/v1/audit?actor=admin")
            assert refused.status == 403
            assert "403" in doc["paths"]["/api/v1/audit"]["get"]["responses"]
        finally:
            await writer.close()
        for entry in (await admin.json("GET", "/api/v1/audit?limit=50"))["entries"]:
            conforms(doc, entry_schema, entry)
