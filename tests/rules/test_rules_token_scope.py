"""A caller who may change rules but not read them (a token with `rules` and not `read`, refused a
GET) learns from no other answer what a stored rule says: an import's dry run and its 409 say
which rules are stored and at which version, not who changed them, when or how, whether they are
enabled, nor whether the pack's document is the stored one (`unchanged` confirmed a guessed rule);
an update answers that the rule changed, not the text it built on the stored one (its comments);
a dry run of a stored rule by its id is refused (its firings tell what it says). A caller with
`read` is shown all of it, as before, and every answer is what the OpenAPI document describes."""

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
TEXT = f"""\
# barrier opens for the residents' plates: {SECRET}
id: gate-open-permitted-plate
name: Open for permitted plates
when:
  - event: vehicle
if: payload.get('plate') in ['{SECRET}']
then:
  - alert: permitted
"""
PACK = "rules:\n" + "".join(
    ("  - " if i == 0 else "    ") + line + "\n" for i, line in enumerate(TEXT.splitlines()[1:])
)
UNREAD_CHANGE = {"id", "change", "version", "enabled_after"}


@contextlib.asynccontextmanager
async def stored_text(tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    """A running site with TEXT stored, and its callers: an admin, who may read rules, and a
    token with `rules` only."""
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        admin = Client(session, rt.web_port, create_token(rt.state, "admin", ["read", "rules", "admin"]))
        changer = Client(session, rt.web_port, create_token(rt.state, "script", ["rules"]))
        admin.h["Content-Type"] = "application/yaml"
        assert (await admin.call("POST", "", data=TEXT))[0] == 201
        del admin.h["Content-Type"]
        yield admin, changer


def described(route: str, method: str, status: str, media: str = "application/json") -> dict[str, Any]:
    return paths()[route][method]["responses"][status]["content"][media]["schema"]


def assert_fits(shown: dict[str, Any], schema: dict[str, Any]) -> None:
    assert set(schema.get("required", ())) <= set(shown), shown
    assert set(shown) <= set(schema["properties"]), shown


async def test_a_rules_only_token_learns_no_stored_rule_from_an_import(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        admin = Client(session, rt.web_port, create_token(rt.state, "admin", ["read", "rules", "admin"]))
        changer = Client(session, rt.web_port, create_token(rt.state, "script", ["rules"]))
        admin.h["Content-Type"] = changer.h["Content-Type"] = "application/yaml"
        assert (await admin.call("POST", "", data=TEXT))[0] == 201

        # the pack is the stored rule (a guess confirmed, for a caller who may read)
        status, seen = await admin.call("POST", "/import?dry_run=1", data=PACK)
        assert status == 200 and seen["changes"][0]["change"] == "unchanged", seen
        assert seen["changes"][0]["updated_by"] == "admin" and seen["changes"][0]["enabled_before"] is True

        status, told = await changer.call("POST", "/import?dry_run=1", data=PACK)
        assert status == 200 and told["etag"] == seen["etag"], told
        [change] = told["changes"]
        assert change == {
            "id": "gate-open-permitted-plate",
            "change": "replaced",
            "version": 1,
            "enabled_after": True,
        }
        item = described("/api/v1/rules/import", "post", "200")["oneOf"][1]["properties"]["changes"]["items"]
        assert_fits(change, item)

        # a stale If-Match: the 409's changes are as trimmed
        changer.h["If-Match"] = '"' + "0" * 32 + '"'
        status, refused = await changer.call("POST", "/import", data=PACK)
        assert status == 409 and [set(c) for c in refused["changes"]] == [UNREAD_CHANGE], refused
        assert refused["changes"][0]["change"] == "replaced" and "admin" not in str(refused)
        assert SECRET not in str(refused)
        assert_fits(refused["changes"][0], item)


async def test_a_rules_only_token_is_not_answered_the_stored_text_of_a_rule_it_updates(
    tmp_path: Path,
) -> None:
    async with stored_text(tmp_path) as (admin, changer):
        doc = {
            "id": "gate-open-permitted-plate",
            "when": [{"event": "vehicle"}],
            "if": "payload.get('plate') in []",
            "then": [{"alert": "permitted"}],
        }

        # the JSON update keeps the stored text's comment: stored, and not answered
        status, shown = await changer.call("PUT", "/gate-open-permitted-plate", doc)
        assert status == 200 and shown["version"] == 2 and shown["updated_by"] == "script", shown
        assert not {"name", "rule", "text"} & set(shown) and SECRET not in str(shown), shown
        assert_fits(shown, described("/api/v1/rules/{id}", "put", "200"))
        status, stored = await admin.call("GET", "/gate-open-permitted-plate")
        assert status == 200 and stored["version"] == 2 and SECRET in stored["text"]

        # a caller who may read is answered the rule, as before
        status, shown = await admin.call("PUT", "/gate-open-permitted-plate", doc)
        assert status == 200 and shown["version"] == 3 and SECRET in shown["text"]


async def test_a_rules_only_token_may_not_dry_run_a_stored_rule_by_its_id(tmp_path: Path) -> None:
    async with stored_text(tmp_path) as (admin, changer):
        status, refused = await changer.call(
            "POST", "/dry-run", {"id": "gate-open-permitted-plate", "hours": 1}
        )
        assert status == 403 and "read" in refused["detail"], refused
        # its own rule it may still dry-run; a caller who may read runs the stored one
        rule = {"id": "mine", "when": [{"event": "vehicle"}], "then": [{"alert": "x"}]}
        assert (await changer.call("POST", "/dry-run", {"rule": rule, "hours": 1}))[0] == 200
        status, ran = await admin.call("POST", "/dry-run", {"id": "gate-open-permitted-plate", "hours": 1})
        assert status == 200 and ran["firings"] == [], ran
