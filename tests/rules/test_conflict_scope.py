"""A change refused because the rule is no longer at the version its If-Match named (409) shows
the rule as it is now (its text, who changed it and when, whether it is enabled) only to a caller
who may read rules: a token with only the `rules` scope, which may not GET a rule, read any rule's
text by sending a made-up If-Match. It still gets the current version, enough to retry against it,
and the answer is what the OpenAPI document says a 409 holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from rules.openapi import paths
from tests.rules.test_api import Client
from tests.support.site import running_site

SECRET = "AB-1234"
RULE = {
    "id": "gate-open-permitted-plate",
    "name": "Open for permitted plates",
    "when": [{"event": "vehicle"}],
    "if": f"payload.get('plate') in ['{SECRET}']",
    "then": [{"alert": "permitted"}],
}
PROBLEM_KEYS = {"type", "title", "status", "detail", "message_key", "args"}
SHOWN_TO_READERS = {"updated_by", "updated", "enabled", "text"}


def conflict_schema() -> dict[str, Any]:
    """The 409 a change of one rule answers, as the OpenAPI document describes it."""
    op = paths()["/api/v1/rules/{id}"]["delete"]
    return op["responses"]["409"]["content"]["application/problem+json"]["schema"]


def assert_described(body: dict[str, Any]) -> None:
    schema = conflict_schema()
    assert set(schema["required"]) <= set(body), body
    assert set(body) - PROBLEM_KEYS <= set(schema["properties"]), body


async def test_a_conflict_shows_the_rule_only_to_a_caller_who_may_read_it(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        admin = Client(session, rt.web_port, create_token(rt.state, "admin", ["read", "rules"]))
        changer = Client(session, rt.web_port, create_token(rt.state, "script", ["rules"]))
        assert (await admin.call("POST", "", RULE))[0] == 201
        path = f"/{RULE['id']}"
        assert (await changer.call("GET", path))[0] == 403

        # each change made against a version the rule is not at: refused, and only the version shown
        changer.h["If-Match"] = '"999"'
        for method, suffix, body in (
            ("DELETE", "", None),
            ("PUT", "", {**RULE, "name": "changed"}),
            ("POST", "/enable", None),
            ("POST", "/disable", None),
            ("POST", "/versions/1/restore", None),
        ):
            status, refused = await changer.call(method, path + suffix, body)
            assert status == 409, (method, suffix, refused)
            assert refused["your_version"] == 999 and refused["current_version"] == 1
            assert not SHOWN_TO_READERS & set(refused), (method, suffix, refused)
            assert SECRET not in str(refused) and "admin" not in refused["detail"]
            assert_described(refused)
        status, stored = await admin.call("GET", path)
        assert status == 200 and stored["version"] == 1 and stored["enabled"] is True

        # a caller who may read rules sees what moved, as before
        admin.h["If-Match"] = '"999"'
        status, refused = await admin.call("DELETE", path)
        assert status == 409 and refused["current_version"] == 1
        assert refused["updated_by"] == "admin" and refused["enabled"] is True
        assert SECRET in refused["text"] and "admin" in refused["detail"]
        assert isinstance(refused["updated"], float)
        assert_described(refused)

        # the version the 409 gave is enough to retry against it
        changer.h["If-Match"] = f'"{refused["current_version"]}"'
        assert (await changer.call("DELETE", path))[0] == 204

        # deleted since: the version is null, and still nothing else
        status, refused = await changer.call("PUT", path, RULE)
        assert status == 409 and refused["current_version"] is None
        assert not SHOWN_TO_READERS & set(refused)
        assert (await admin.call("GET", path))[0] == 404
