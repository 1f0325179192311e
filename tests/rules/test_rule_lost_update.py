"""Two technicians change one rule: a change made against the version its author loaded
(`If-Match`, the version as the rule's ETag) is refused with 409 and the rule as it is now when a
colleague saved meanwhile, and nothing changes; the first save was silently overwritten, and a stale
editor holding `enabled: true` enabled again a rule a colleague had disabled. A client that sends no
If-Match replaces whatever is stored, as before. An import asked with `?dry_run=1` stores nothing and
says what it would replace, enable or disable."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.api.tokens import create_token
from edge.state import StateDB
from rules.store import RuleStore, VersionConflict, expecting
from tests.support.site import running_site

TEXT = """\
id: bin-full
name: Bin full
when: bin-*.fill_pct
if: value >= 85
for: 1m
severity: warning
then:
  - alert: "{device} {value:.0f}%"
"""
YAML = {"Content-Type": "application/yaml"}


@contextlib.asynccontextmanager
async def two_techs(tmp_path: Path) -> AsyncIterator[tuple[Tech, Tech]]:
    """Two technicians' API clients (tokens with read and rules) of a running gateway."""
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        a = Tech(session, rt.web_port, create_token(rt.state, "tech-a", ["read", "rules"]))
        b = Tech(session, rt.web_port, create_token(rt.state, "tech-b", ["read", "rules"]))
        yield a, b


class Tech:
    """One technician's API client (a token of their own)."""

    def __init__(self, session: aiohttp.ClientSession, port: int, token: str) -> None:
        self.s = session
        self.base = f"http://127.0.0.1:{port}/api/v1/rules"
        self.auth = {"Authorization": f"Bearer {token}"}

    async def call(
        self, method: str, path: str = "", text: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, str | None]:
        hdrs = {**self.auth, **(YAML if text is not None else {}), **(headers or {})}
        async with self.s.request(method, self.base + path, data=text, headers=hdrs) as resp:
            body = (
                await resp.json(content_type=None)
                if resp.content_type.endswith("json")
                else await resp.text()
            )
            return resp.status, body, resp.headers.get("ETag")


async def test_a_save_made_against_an_old_version_is_refused_with_the_rule_as_it_is_now(
    tmp_path: Path,
) -> None:
    async with two_techs(tmp_path) as (a, b):
        assert (await a.call("POST", "", TEXT))[0] == 201

        # both open the rule: its version is its ETag
        status, opened, etag = await a.call("GET", "/bin-full")
        assert status == 200 and opened["version"] == 1 and etag == '"1"'
        assert (await b.call("GET", "/bin-full"))[2] == '"1"'

        status, saved, etag = await a.call(
            "PUT", "/bin-full", TEXT.replace("value >= 85", "value >= 95"), {"If-Match": '"1"'}
        )
        assert status == 200 and saved["version"] == 2 and etag == '"2"'

        # B's save was made against version 1: refused, with what A stored, and nothing changes
        status, refused, _ = await b.call(
            "PUT", "/bin-full", TEXT.replace("severity: warning", "severity: info"), {"If-Match": '"1"'}
        )
        assert status == 409, refused
        assert refused["your_version"] == 1 and refused["current_version"] == 2
        # who saved it is personal: a token without admin is not told another's name
        assert refused["updated_by"] is None and refused["enabled"] is True
        assert "value >= 95" in refused["text"] and "severity: warning" in refused["text"]
        assert refused["message_key"] == "editor.saveConflict"
        stored = (await a.call("GET", "/bin-full"))[1]
        assert stored["version"] == 2 and "value >= 95" in stored["text"]
        assert [v["version"] for v in (await a.call("GET", "/bin-full/versions"))[1]["versions"]] == [2, 1]

        # B merges A's change and saves against version 2, knowingly
        merged = refused["text"].replace("severity: warning", "severity: info")
        status, saved, _ = await b.call("PUT", "/bin-full", merged, {"If-Match": '"2"'})
        assert status == 200 and saved["version"] == 3
        stored = (await a.call("GET", "/bin-full"))[1]
        assert "value >= 95" in stored["text"] and "severity: info" in stored["text"]


async def test_a_stale_editor_does_not_enable_again_a_rule_a_colleague_disabled(tmp_path: Path) -> None:
    async with two_techs(tmp_path) as (a, b):
        assert (await a.call("POST", "", TEXT))[0] == 201
        stale = (await a.call("GET", "/bin-full"))[1]["text"]  # enabled: the editor's text says so

        status, disabled, _ = await b.call("POST", "/bin-full/disable", headers={"If-Match": '"1"'})
        assert status == 200 and disabled["enabled"] is False and disabled["version"] == 2

        status, refused, _ = await a.call(
            "PUT", "/bin-full", stale.replace("for: 1m", "for: 2m"), {"If-Match": '"1"'}
        )
        assert status == 409 and refused["enabled"] is False and refused["updated_by"] is None
        stored = (await a.call("GET", "/bin-full"))[1]
        assert stored["enabled"] is False and stored["state"] == "disabled" and stored["version"] == 2

        # enabling, deleting and restoring against an old version are refused as well
        assert (await a.call("POST", "/bin-full/enable", headers={"If-Match": '"1"'}))[0] == 409
        assert (await a.call("DELETE", "/bin-full", headers={"If-Match": '"1"'}))[0] == 409
        assert (await a.call("POST", "/bin-full/versions/1/restore", headers={"If-Match": '"1"'}))[0] == 409
        stored = (await a.call("GET", "/bin-full"))[1]
        assert stored["enabled"] is False and stored["version"] == 2

        # a save that creates the rule anew, made against a version of it, is refused too
        assert (await a.call("DELETE", "/bin-full", headers={"If-Match": '"2"'}))[0] == 204
        status, refused, _ = await a.call("PUT", "/bin-full", stale, {"If-Match": '"2"'})
        assert status == 409 and refused["current_version"] is None and refused["text"] is None
        assert (await a.call("GET", "/bin-full"))[0] == 404


async def test_without_if_match_a_change_replaces_what_is_stored_and_a_bad_one_is_refused(
    tmp_path: Path,
) -> None:
    async with two_techs(tmp_path) as (a, _):
        assert (await a.call("POST", "", TEXT))[0] == 201
        assert (await a.call("PUT", "/bin-full", TEXT.replace("85", "90")))[0] == 200
        assert (await a.call("PUT", "/bin-full", TEXT.replace("85", "80")))[1]["version"] == 3
        for bad in ("*", '"1", "2"', 'W/"3"', '"v3"', '""', '"0"', '"99999999999999999999999"'):
            status, problem, _ = await a.call("PUT", "/bin-full", TEXT, {"If-Match": bad})
            assert status == 400 and "If-Match" in problem["detail"], (bad, problem)
        stored = (await a.call("GET", "/bin-full"))[1]
        assert stored["version"] == 3 and "value >= 80" in stored["text"]
        assert (await a.call("PUT", "/bin-full", TEXT, {"If-Match": "3"}))[1]["version"] == 4  # unquoted


def _store(path: Path) -> RuleStore:
    return RuleStore(StateDB(str(path)))


def test_the_version_is_checked_in_the_write_itself_against_another_connections_commit(
    tmp_path: Path,
) -> None:
    """What another process (`edge rules import`) committed after the change was made is caught:
    the check reads the database inside the write's transaction. A pack is stored whole or not."""
    db = tmp_path / "state.db"
    gateway, other = _store(db), _store(db)
    try:
        rule = {"id": "r", "when": "a.b", "if": "value > 1", "then": [{"alert": "x"}]}
        assert gateway.put(rule, "tech-a").version == 1
        assert other.put({**rule, "enabled": False}, "cli", "import").version == 2
        with expecting({"r": 1}), pytest.raises(VersionConflict) as caught:
            gateway.put({**rule, "if": "value > 5"}, "tech-a")
        assert caught.value.current is not None and caught.value.current.version == 2
        assert caught.value.current.enabled is False
        assert gateway.get("r") is not None and gateway.get("r").version == 2  # type: ignore[union-attr]

        new = {"id": "n", "when": "a.b", "if": "value > 1", "then": [{"alert": "y"}]}
        with expecting({"r": 1, "n": None}), pytest.raises(VersionConflict):
            gateway.put_many([new, rule], "tech-a", "import")
        assert gateway.get("n") is None and gateway.versions("n") == []
        with expecting({"r": 2, "n": None}):
            assert [s.version for s, _, _ in gateway.put_many([new, rule], "tech-a", "import")] == [1, 3]
        with expecting({"r": 2}), pytest.raises(VersionConflict):
            gateway.delete("r", "tech-a")
        assert gateway.get("r") is not None
    finally:
        gateway.state.close()
        other.state.close()


PACK = """\
rules:
  - id: bin-full
    name: Bin full
    when: bin-*.fill_pct
    if: value >= 85
    for: 1m
    severity: warning
    then:
      - alert: "{device} {value:.0f}%"
  - id: bin-empty
    when: bin-*.fill_pct
    if: value < 5
    enabled: false
    then:
      - alert: "{device} empty"
  - id: bin-new
    when: bin-*.fill_pct
    if: value > 99
    then:
      - alert: "{device} overflowing"
"""


async def test_an_import_dry_run_says_what_it_would_replace_and_stores_nothing(tmp_path: Path) -> None:
    async with two_techs(tmp_path) as (a, _):
        assert (await a.call("POST", "/import", PACK))[0] == 200
        # tuned and disabled in the UI since; bin-empty enabled
        tuned = (await a.call("GET", "/bin-full"))[1]["text"].replace("for: 1m", "for: 5m")
        assert (await a.call("PUT", "/bin-full", tuned))[0] == 200
        assert (await a.call("POST", "/bin-full/disable"))[1]["version"] == 3
        assert (await a.call("POST", "/bin-empty/enable"))[0] == 200
        assert (await a.call("DELETE", "/bin-new"))[0] == 204
        before = (await a.call("GET"))[1]

        status, answer, _ = await a.call("POST", "/import?dry_run=1", PACK)
        assert status == 200 and answer["dry_run"] is True
        changes = {c["id"]: c for c in answer["changes"]}
        assert changes["bin-full"]["change"] == "replaced" and changes["bin-full"]["version"] == 3
        assert changes["bin-full"]["enabled_before"] is False and changes["bin-full"]["enabled_after"] is True
        assert changes["bin-full"]["updated_by"] == "tech-a" and changes["bin-full"]["action"] == "disable"
        assert (
            changes["bin-empty"]["enabled_before"] is True and changes["bin-empty"]["enabled_after"] is False
        )
        assert changes["bin-new"] == {
            "id": "bin-new",
            "change": "new",
            "version": None,
            "enabled_after": True,
        }
        assert (await a.call("GET"))[1] == before  # nothing stored

        # the same pack again, unchanged rules say so
        same = (await a.call("POST", "/import?dry_run=true", (await a.call("GET", "/export"))[1]))[1]
        assert {c["change"] for c in same["changes"]} == {"unchanged"}

        # a bad pack, or a bad dry_run, is refused as the import would be
        assert (await a.call("POST", "/import?dry_run=1", "rules: [{id: x}]"))[0] == 422
        assert (await a.call("POST", "/import?dry_run=maybe", PACK))[0] == 400
        assert (await a.call("GET"))[1] == before


async def test_an_import_made_against_its_dry_run_is_refused_when_a_rule_changed_since(
    tmp_path: Path,
) -> None:
    async with two_techs(tmp_path) as (a, b):
        assert (await a.call("POST", "/import", PACK))[0] == 200
        status, shown, etag = await a.call("POST", "/import?dry_run=1", PACK)
        assert status == 200 and etag == f'"{shown["etag"]}"'

        # a colleague disables a rule of the pack while the list is on screen
        assert (await b.call("POST", "/bin-full/disable"))[0] == 200
        status, refused, _ = await a.call("POST", "/import", PACK, {"If-Match": etag or ""})
        assert status == 409 and refused["message_key"] == "rules.importMoved", refused
        moved = {c["id"]: c for c in refused["changes"]}
        assert moved["bin-full"]["enabled_before"] is False and moved["bin-full"]["version"] == 2
        stored = (await a.call("GET", "/bin-full"))[1]
        assert stored["enabled"] is False and stored["version"] == 2  # nothing imported

        # made against what is stored now, it is imported
        status, imported, _ = await a.call("POST", "/import", PACK, {"If-Match": f'"{refused["etag"]}"'})
        assert status == 200 and sorted(imported["imported"]) == ["bin-empty", "bin-full", "bin-new"]
        assert (await a.call("GET", "/bin-full"))[1]["version"] == 3

        # an If-Match that is no dry run's ETag is refused; none imports over whatever is stored
        assert (await a.call("POST", "/import", PACK, {"If-Match": '"7"'}))[0] == 400
        assert (await a.call("POST", "/import", PACK))[0] == 200
        assert (await a.call("GET", "/bin-full"))[1]["version"] == 4


async def test_disabling_keeps_a_save_that_landed_while_it_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disabling reads the rule, compiles it off the loop, then stores it: a colleague's save that
    landed in between was replaced by the document read before it."""
    import rules.api

    async with two_techs(tmp_path) as (a, b):
        assert (await a.call("POST", "", TEXT))[0] == 201
        compile_first = rules.api._compiled
        landed: list[int] = []

        async def compiled_then_a_save_lands(doc: Any, webhook_allow: list[str] | None = None) -> Any:
            out = await compile_first(doc, webhook_allow)
            if not landed:  # the first compile is the disable's: B saves meanwhile
                landed.append(1)
                status, saved, _ = await b.call(
                    "PUT", "/bin-full", TEXT.replace("value >= 85", "value >= 95")
                )
                assert status == 200 and saved["version"] == 2
            return out

        monkeypatch.setattr(rules.api, "_compiled", compiled_then_a_save_lands)
        status, disabled, _ = await a.call("POST", "/bin-full/disable")
        assert status == 200 and disabled["enabled"] is False and disabled["version"] == 3
        assert "value >= 95" in disabled["text"]
        stored = (await a.call("GET", "/bin-full"))[1]
        assert stored["enabled"] is False and "value >= 95" in stored["text"]
        actions = [v["action"] for v in (await a.call("GET", "/bin-full/versions"))[1]["versions"]]
        assert actions == ["disable", "update", "create"]
