"""A change refused because the rule is no longer at the version its If-Match named (409) shows
the rule as it is now (its text, who changed it and when, whether it is enabled) only to a caller
who may read rules: a token with only the `rules` scope, which may not GET a rule, read any rule's
text by sending a made-up If-Match. It still gets the current version, enough to retry against it,
and the answer is what the OpenAPI document says a 409 holds. Nor does the answer of an enable,
disable or restore (a change whose document the caller did not send) show such a caller what the
rule says: enabling a rule already enabled read its text as well."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
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


@contextlib.asynccontextmanager
async def stored_rule(tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    """A running site with RULE stored, and its callers: one who may read rules, and a token
    with `rules` only."""
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        admin = Client(session, rt.web_port, create_token(rt.state, "admin", ["read", "rules"]))
        changer = Client(session, rt.web_port, create_token(rt.state, "script", ["rules"]))
        assert (await admin.call("POST", "", RULE))[0] == 201
        yield admin, changer


def conflict_schema() -> dict[str, Any]:
    """The 409 a change of one rule answers, as the OpenAPI document describes it."""
    op = paths()["/api/v1/rules/{id}"]["delete"]
    return op["responses"]["409"]["content"]["application/problem+json"]["schema"]


def assert_changed_described(shown: dict[str, Any], route: str) -> None:
    """`shown` is what the OpenAPI document says an enable, disable or restore answers."""
    schema = paths()[f"/api/v1/rules/{{id}}{route}"]["post"]["responses"]["200"]["content"]
    schema = schema["application/json"]["schema"]
    assert set(schema["required"]) <= set(shown), shown
    assert set(shown) - {"redacted"} <= set(schema["properties"]), shown


def assert_described(body: dict[str, Any]) -> None:
    schema = conflict_schema()
    assert set(schema["required"]) <= set(body), body
    assert set(body) - PROBLEM_KEYS <= set(schema["properties"]), body


async def test_a_conflict_shows_the_rule_only_to_a_caller_who_may_read_it(tmp_path: Path) -> None:
    async with stored_rule(tmp_path) as (admin, changer):
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


async def test_enable_disable_and_restore_answer_a_caller_who_may_not_read_without_the_rule(
    tmp_path: Path,
) -> None:
    async with stored_rule(tmp_path) as (admin, changer):
        path = f"/{RULE['id']}"
        for suffix, route, version, enabled in (
            ("/enable", "/enable", 2, True),
            ("/disable", "/disable", 3, False),
            ("/versions/1/restore", "/versions/{v}/restore", 4, True),
        ):
            status, shown = await changer.call("POST", path + suffix)
            assert status == 200, (suffix, shown)
            assert shown["id"] == RULE["id"] and shown["version"] == version and shown["enabled"] is enabled
            assert shown["updated_by"] == "script" and "state" in shown
            assert not {"name", "rule", "text"} & set(shown), (suffix, shown)
            assert SECRET not in str(shown)
            assert_changed_described(shown, route)
            # the version shown is enough to make the next change against it
            changer.h["If-Match"] = f'"{version}"'

        # a caller who may read rules is shown the rule, as before
        status, shown = await admin.call("POST", path + "/disable")
        assert status == 200 and shown["version"] == 5 and SECRET in shown["text"]
        assert shown["rule"]["name"] == RULE["name"]
