"""A user's demotion, disabling or deletion revokes API tokens they made. The OpenAPI document
describes what these answers, the token routes and a redacted audit log really carry, field by
field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema_rs

from edge.api.tokens import create_token
from tests.support.site import running_site
from tests.web.conftest import SITE, Client, make_user, signed_in_admin


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
    token_file = tmp_path / "city.token"
    token_file.write_text("c" * 40)
    token_file.chmod(0o600)
    site = SITE + f"consumers:\n  - {{id: city-platform, token_file: {token_file}}}\n"
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
