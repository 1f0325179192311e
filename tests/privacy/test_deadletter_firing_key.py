"""A sink's dead letter of a rule's alert on a resident's measurement is sealed under the resident's
key, as the journal's alert is, though the alert names them in no field: a forget of the resident
shreds it (it no longer opens, the other resident's still does), and the resident's export lists
it before. On a real sealed gateway whose HTTP receiver refuses (400) every batch with an alert.

What else the state DB keeps sealed under the data keys counts as sealed data too: a keys.db gone
while the state DB holds an MQTT command's sealed answer is refused, not made anew (a new one would
open none of it, and a forget would delete nothing)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from edge.mqtt.seen import SEEN_SCHEMA
from edge.privacy.atrest import Sealer, aad, keys_path, sealed_data
from edge.privacy.keys import KeyStoreUnusable
from edge.state import StateDB
from edge.store.rows import register, unregister
from edge.sync import deadletters
from edge.sync.component import SyncComponent
from tests.privacy.conftest import (
    BP_HIGH_RULE,
    GATE_PLATE,
    RESIDENT,
    SITE_FILE,
    SYSTOLIC,
    http_sink,
    measure_two_residents,
    plaintext_in,
    site_doc,
)
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async

OTHER = "R-55122"  # a second resident, not forgotten
OTHER_SYSTOLIC = 15277
UPSTREAM = "\nupstream:" + http_sink("central", "sensitive") + "\n"


@pytest.fixture
async def refusing_alerts() -> AsyncIterator[str]:
    """An HTTP receiver answering 400 to every batch holding an alert, 204 to the others; its URL."""

    async def ingest(request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        if any(e.get("kind") == "alert" for e in doc.get("events", [])):
            return web.Response(status=400, text="alerts are not taken here")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/ingest", ingest)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/ingest"
    finally:
        await runner.cleanup()


def dead_letters(tmp_path: Path, master: Path) -> list[dict[str, Any]]:
    """The dead letters' records as the site's keys open them."""
    sealer = Sealer.open(tmp_path / "edge.db", str(master))
    state = StateDB(str(tmp_path / "state.db"))
    register(state.path, sealer)
    try:
        return [d["record"] for d in deadletters.listing(state, None, None, 100)]
    finally:
        unregister(state.path, sealer)
        state.conn.close()
        sealer.close()


def quoting(records: list[dict[str, Any]], mark: object) -> list[dict[str, Any]]:
    return [r for r in records if str(mark) in json.dumps(r, ensure_ascii=False)]


async def test_forget_shreds_the_dead_letter_of_an_alert_a_residents_measurement_fired(
    tmp_path: Path, master: Path, refusing_alerts: str
) -> None:
    config = site_file(tmp_path, site_doc(master) + UPSTREAM.replace("URL", refusing_alerts))
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:
        measure_two_residents(rt, [BP_HIGH_RULE], OTHER, OTHER_SYSTOLIC)
        sync = rt.component(SyncComponent)
        assert sync is not None
        central = sync.sinks["central"]

        async def both_dead_lettered() -> bool:
            await rt.journal.flush()
            return central.dead_letters >= 2

        await until_async(both_dead_lettered, timeout=30, what="both residents' alerts dead-lettered")

    held = dead_letters(tmp_path, master)
    assert [r["kind"] for r in held] == ["alert", "alert"]
    mine, others = quoting(held, f"{SYSTOLIC}/71"), quoting(held, f"{OTHER_SYSTOLIC}/71")
    assert len(mine) == 1 and len(others) == 1
    assert not quoting(held, RESIDENT)  # named in no field: found by its key
    assert plaintext_in(tmp_path, skip=SITE_FILE) == []

    out = tmp_path / "export.jsonl"
    done = await asyncio.to_thread(
        edge_cli, "privacy", "export", "-c", str(config), "--subject", RESIDENT, "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    listed = [d["record"] for d in exported if d.get("type") == "dead_letter"]
    assert listed == mine

    done = await asyncio.to_thread(edge_cli, "privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr

    after = dead_letters(tmp_path, master)
    assert quoting(after, SYSTOLIC) == []
    assert {"erased": True} in after  # it no longer opens
    assert quoting(after, f"{OTHER_SYSTOLIC}/71") == others  # the other resident's stays
    assert plaintext_in(tmp_path, skip=(*SITE_FILE, "export.jsonl")) == []


def test_a_missing_keys_db_is_not_made_anew_over_sealed_mqtt_command_answers(
    tmp_path: Path, master: Path
) -> None:
    journal, state_path = tmp_path / "edge.db", tmp_path / "state.db"
    state = StateDB(str(state_path))
    state.migrate("mqtt", SEEN_SCHEMA)
    sealer = Sealer.open(journal, str(master), state_path=state_path)
    try:  # a card reader's answer, sealed under the plate's key as edge.mqtt.seen keeps it
        answer = sealer.keys.seal(GATE_PLATE, b'{"status": "ok"}', aad("mqtt", 0.0, "central\x00r-1"))
    finally:
        sealer.close()
    with state.lock:
        state.conn.execute(
            "INSERT INTO mqtt_requests(sink, id, at, sealed) VALUES (?, ?, ?, ?)",
            ("central", "r-1", time.time(), answer),
        )
    state.conn.close()
    Path(keys_path(journal)).unlink()

    assert sealed_data(journal, state_path) == f"{state_path} holds sealed MQTT command answers"
    with pytest.raises(KeyStoreUnusable, match="sealed MQTT command answers"):
        Sealer.open(journal, str(master), state_path=state_path)
    assert not Path(keys_path(journal)).exists()


def test_mqtt_requests_without_a_sealed_answer_leave_a_missing_keys_db_to_be_made(tmp_path: Path) -> None:
    state = StateDB(str(tmp_path / "state.db"))
    state.migrate("mqtt", SEEN_SCHEMA[:2])  # the table as a release before sealed answers made it
    with state.lock:
        state.conn.execute("INSERT INTO mqtt_requests(sink, id, at) VALUES ('central', 'r-1', 1.0)")
    state.conn.close()
    assert sealed_data(tmp_path / "edge.db", tmp_path / "state.db") is None
