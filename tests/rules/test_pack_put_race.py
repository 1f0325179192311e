"""A rule saved or deleted while a pack is being stored stays as that change left it: the pack's
transaction commits in a thread, the save commits after it on the loop, and the pack's older
version must not be run over it afterwards (nor a deleted rule run again). What another process
stores meanwhile is loaded once the pack runs, not half-way through it."""

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


class PackWindow:
    """Holds the pack's thread after its transaction committed, until released: the window in
    which the loop may change rules before the pack is run."""

    def __init__(self, store: RuleStore) -> None:
        self.committed = threading.Event()
        self.release = threading.Event()
        real = store.put_many
        loop_thread = threading.current_thread()

        def put_many(*args: Any, **kwargs: Any) -> Any:
            out = real(*args, **kwargs)
            if threading.current_thread() is not loop_thread:
                self.committed.set()
                self.release.wait(10)
            return out

        store.put_many = put_many  # type: ignore[method-assign]

    async def opened(self) -> None:
        assert await asyncio.to_thread(self.committed.wait, 10), "the pack's transaction never committed"


@contextlib.asynccontextmanager
async def pack_held_open(comp: Any) -> AsyncIterator[None]:
    """PACK being stored by `comp`, held in the window after its transaction committed and before
    it runs; on leaving, released and awaited to its end."""
    window = PackWindow(comp.store)
    compiled = await asyncio.to_thread(compile_pack, PACK, "p.yaml")
    task = asyncio.create_task(comp.store_pack(compiled, "admin"))
    try:
        await window.opened()
        yield
    finally:
        window.release.set()
        await asyncio.wait_for(task, 10)


def _engine_matches_store(comp: Any) -> None:
    stored = comp.store.stored_versions()
    assert set(comp.engine.rules) == set(stored)
    for rule_id, version in stored.items():
        assert comp.engine.rules[rule_id].rule.name == comp.store.get(rule_id).doc["name"], rule_id
        assert comp._loaded[rule_id] == version


async def test_save_and_delete_while_pack_is_stored(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        async with pack_held_open(comp):
            comp.put(
                {
                    "id": "r2",
                    "name": "saved-in-ui",
                    "when": "m.v",
                    "if": "value > 1",
                    "then": [{"alert": "ui"}],
                },
                "admin",
                "update",
            )
            assert comp.delete("r0", "admin")
        assert comp.store.get("r0") is None
        assert "r0" not in comp.engine.rules
        assert comp.engine.rules["r2"].rule.name == "saved-in-ui"
        assert comp.engine.rules["r1"].rule.name == "from-pack"
        _engine_matches_store(comp)
        assert comp.reload_changed() == []


async def test_other_process_commits_while_pack_is_stored(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        comp = rt.components["rules"]
        async with pack_held_open(comp):
            # another process (edge rules import) stores a rule of its own after the pack
            other = RuleStore(type(comp.store.state)(comp.store.state.path))
            try:
                other.put(
                    {"id": "x", "name": "other", "when": "m.v", "if": "value > 1", "then": [{"alert": "x"}]},
                    "cli",
                    "import",
                )
            finally:
                other.state.close()
            # a look (the reload tick, a GET) in the window loads nothing of the pack, nor waits for it
            assert comp.reload_changed() == []
            assert "r1" not in comp.engine.rules
        assert comp.reload_changed() == ["x"]
        _engine_matches_store(comp)


class AskedLock(asyncio.Lock):
    """`changing`, counting who asked for it."""

    asked = 0

    async def acquire(self) -> Literal[True]:
        self.asked += 1
        return await super().acquire()


async def test_an_api_save_waits_for_the_pack(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        comp = rt.components["rules"]
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        comp.changing = AskedLock()
        async with pack_held_open(comp):
            rule = {
                "id": "r2",
                "name": "saved-in-ui",
                "when": "m.v",
                "if": "value > 1",
                "then": [{"alert": "ui"}],
            }
            call = asyncio.create_task(tech.call("PUT", "/r2", rule))
            deleted = asyncio.create_task(tech.call("DELETE", "/r0"))
            # both wait for the pack to run, on the loop, which keeps running meanwhile
            await until(
                lambda: comp.changing.asked >= 3, what="the save and the deletion waiting for the pack"
            )
            assert not call.done() and not deleted.done()
        status, body = await asyncio.wait_for(call, 10)
        assert status == 200, body
        assert body["version"] == 2 and body["rule"]["name"] == "saved-in-ui"  # after the pack's
        assert (await asyncio.wait_for(deleted, 10))[0] == 204
        assert comp.engine.rules["r2"].rule.name == "saved-in-ui"
        assert "r0" not in comp.engine.rules
        _engine_matches_store(comp)
