"""A rule created while a pack is being imported waits for the pack (`changing`), and is then
stored only if no rule has its id yet, checked in the create's own transaction: two technicians
creating one new rule get 201 and 409 "Rule exists", not 201 twice with the second replacing the
first, and a create of a rule the pack itself brings does not replace the pack's. Each create here
has passed the early look for an existing rule before it waits. Enabling with If-Match enables
the document of the version If-Match names, never one read before that version was saved."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import aiohttp

from edge.api.tokens import create_token
from rules.model import compile_pack
from rules.store import RuleStore
from tests.rules.helpers import PACK_RACE_SITE as SITE
from tests.rules.helpers import THREE_RULE_PACK as PACK
from tests.rules.test_api import Client
from tests.support.site import running_site
from tests.support.waiting import until


def rule(rule_id: str, name: str) -> dict[str, Any]:
    return {"id": rule_id, "name": name, "when": "m.v", "if": "value > 1", "then": [{"alert": name}]}


class AskedLock(asyncio.Lock):
    """`changing`, counting who asked for it."""

    asked = 0

    async def acquire(self) -> Literal[True]:
        self.asked += 1
        return await super().acquire()


class PackBeforeCommit:
    """Holds the pack's thread before its transaction begins, until released: the pack holds
    `changing` and has stored nothing yet."""

    def __init__(self, store: RuleStore) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = store.put_many
        loop_thread = threading.current_thread()

        def put_many(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not loop_thread:
                self.entered.set()
                if not self.release.wait(10):
                    raise TimeoutError("the pack was never released")
            return real(*args, **kwargs)

        store.put_many = put_many  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def pack_being_stored(comp: Any) -> AsyncIterator[None]:
    """PACK being stored by `comp` (as an import does), held before its transaction; on leaving,
    released and awaited to its end."""
    held = PackBeforeCommit(comp.store)
    compiled = await asyncio.to_thread(compile_pack, PACK, "p.yaml")
    task = asyncio.create_task(comp.store_pack(compiled, "admin"))
    try:
        assert await asyncio.to_thread(held.entered.wait, 10), "the pack was never stored"
        yield
    finally:
        held.release.set()
        await asyncio.wait_for(task, 10)


def history(comp: Any, rule_id: str) -> list[tuple[int, str, str]]:
    return [(v["version"], v["actor"], v["action"]) for v in comp.store.versions(rule_id)]


async def test_two_creates_of_one_new_rule_during_an_import(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        comp = rt.components["rules"]
        comp.changing = AskedLock()
        techs = {
            name: Client(session, rt.web_port, create_token(rt.state, name, ["read", "rules"]))
            for name in ("tech", "tech2")
        }
        async with pack_being_stored(comp):
            creates = {
                name: asyncio.create_task(client.call("POST", "", rule("new-1", f"made by {name}")))
                for name, client in techs.items()
            }
            # the pack and both creates, each past its early look, waiting for the pack
            await until(lambda: comp.changing.asked >= 3, what="both creates waiting for the pack")
            assert not any(t.done() for t in creates.values())
        answers = {name: await asyncio.wait_for(t, 10) for name, t in creates.items()}
        assert sorted(status for status, _ in answers.values()) == [201, 409], answers
        won = next(name for name, (status, _) in answers.items() if status == 201)
        lost = next(body for status, body in answers.values() if status == 409)
        assert lost["title"] == "Rule exists" and lost["message_key"] == "msg.rules.exists"
        assert lost["args"] == {"id": "new-1"}
        assert history(comp, "new-1") == [(1, won, "create")]
        assert comp.store.get("new-1").doc["name"] == f"made by {won}"
        assert comp.engine.rules["new-1"].rule.name == f"made by {won}"
        assert history(comp, "r1") == [(1, "admin", "import")]


async def test_a_create_of_a_rule_the_import_brings_does_not_replace_it(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        comp = rt.components["rules"]
        comp.changing = AskedLock()
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        async with pack_being_stored(comp):
            create = asyncio.create_task(tech.call("POST", "", rule("r1", "made in the editor")))
            await until(lambda: comp.changing.asked >= 2, what="the create waiting for the pack")
            assert comp.store.get("r1") is None and not create.done()
        status, body = await asyncio.wait_for(create, 10)
        assert status == 409 and body["message_key"] == "msg.rules.exists", body
        assert history(comp, "r1") == [(1, "admin", "import")]
        assert comp.store.get("r1").doc["name"] == "from-pack"
        assert comp.engine.rules["r1"].rule.name == "from-pack"

        # once the pack is in, a create of one of its rules is refused at once, as before
        assert (await tech.call("POST", "", rule("r2", "made in the editor")))[0] == 409
        assert history(comp, "r2") == [(1, "admin", "import")]


async def test_enabling_with_if_match_never_enables_a_document_read_before_that_version(
    tmp_path: Path,
) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        comp = rt.components["rules"]
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        assert (await tech.call("POST", "", {**rule("r", "original"), "enabled": False}))[0] == 201
        comp.changing = AskedLock()
        tech.h["If-Match"] = '"2"'
        async with comp.changing:  # as a pack being stored holds it
            call = asyncio.create_task(tech.call("POST", "/r/enable"))
            await until(lambda: call.done() or comp.changing.asked >= 2, what="the enable read the rule")
            # version 2 is saved while the enable, which read version 1, waits
            comp.put({**rule("r", "renamed"), "enabled": False}, "tech2", "update")
        status, body = await asyncio.wait_for(call, 10)
        assert status == 409 and body["your_version"] == 2, body
        stored = comp.store.get("r")
        assert stored.version == 2 and stored.doc["name"] == "renamed" and stored.enabled is False

        # made against the version it names, it enables that version's document
        status, body = await tech.call("POST", "/r/enable")
        assert status == 200 and body["version"] == 3, body
        assert body["rule"]["name"] == "renamed" and body["enabled"] is True
