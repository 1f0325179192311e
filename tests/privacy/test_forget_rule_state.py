"""A rule's saved state keeps the record that fired it (a resident's blood pressure, a plate):
it is sealed under the key of the subject that record names, so forgetting the resident or the
plate shreds it as it shreds the journal's copies; a state about no one stays under the site's
key, and a previous plate (another subject) is not kept in it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from edge.model import Event, Reading
from edge.privacy.atrest import Sealer, open_text, register, unregister
from tests.privacy.conftest import GATE_PLATE, OTHER_PLATE, RESIDENT, SYSTOLIC, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async

GATE = """
  - id: gate-1
    driver: sim
    points:
      - {name: last_plate, type: str, signal: constant, value: "", interval: 1h, privacy: personal}
"""
RULES = [
    {
        "id": "bp-watch",
        "when": [{"event": "blood_pressure"}],
        "if": "payload.get('systolic_mmhg', 0) >= 180",
        "notify": "once",
        "then": [{"alert": "very high reading"}],
    },
    {
        "id": "car-in",
        "when": "gate-1.last_plate",
        "if": f"value == '{GATE_PLATE}'",
        "then": [{"alert": "a car"}],
    },
    {"id": "hot", "when": "kiosk-1.last_systolic", "if": "value > 150", "then": [{"alert": "hot"}]},
]


def saved_states(tmp_path: Path, master: Path) -> dict[str, str | None]:
    """Each rule's saved state as the site's keys open it (None: it no longer opens)."""
    state_db = str(tmp_path / "state.db")
    sealer = Sealer.open(str(tmp_path / "edge.db"), str(master))
    register(state_db, sealer)
    try:
        conn = sqlite3.connect(state_db)
        try:
            rows = conn.execute("SELECT rule_id, key, args FROM rule_state").fetchall()
        finally:
            conn.close()
        assert all(type(args) is bytes for _, _, args in rows)  # sealed, every one
        return {rid: open_text(state_db, args, f"rule_state\x00{rid}\x00{key}") for rid, key, args in rows}
    finally:
        unregister(state_db, sealer)
        sealer.close()


async def test_forget_shreds_the_rule_state_that_names_the_subject(tmp_path: Path, master: Path) -> None:
    config = site_file(tmp_path, site_doc(master) + GATE)
    async with running_site(tmp_path, config.read_text(encoding="utf-8")) as rt:
        rules = rt.components["rules"]
        for rule in RULES:
            rules.put(rule, "test", "create")
        now = time.time()
        rt.hub.ingest(
            [
                Event(
                    "blood_pressure", "kiosk-1", payload={"systolic_mmhg": 185, "resident": RESIDENT}, ts=now
                ),
                Reading(now, "gate-1.last_plate", OTHER_PLATE),
                Reading(now + 1, "gate-1.last_plate", GATE_PLATE),  # fired with the plate before it
                Reading(now, "kiosk-1.last_systolic", 160.0),
            ]
        )

        def saved() -> bool:
            return rules.store.load_states().keys() >= {"bp-watch", "car-in", "hot"}

        await until_async(lambda: asyncio.to_thread(saved), what="the three rules' states saved")
    before = saved_states(tmp_path, master)
    assert RESIDENT in str(before["bp-watch"]) and "185" in str(before["bp-watch"])
    assert GATE_PLATE in str(before["car-in"]) and OTHER_PLATE not in str(before["car-in"])
    assert "160" in str(before["hot"])

    for subject in (RESIDENT, GATE_PLATE):
        done = await asyncio.to_thread(edge_cli, "privacy", "forget", "-c", str(config), "--subject", subject)
        assert done.returncode == 0, done.stderr
    after = saved_states(tmp_path, master)
    assert after["bp-watch"] is None and after["car-in"] is None  # shredded with the subjects' keys
    assert "160" in str(after["hot"])  # names no one: under the site's key, kept
    async with running_site(tmp_path, config.read_text(encoding="utf-8")) as rt:
        states = rt.components["rules"].engine.rules["bp-watch"].states
        assert all(st.args is None for st in states.values())


async def test_a_state_sealed_under_the_site_key_is_sealed_again_under_its_subject(
    tmp_path: Path, master: Path
) -> None:
    """A state an earlier version sealed under the site's key is sealed again under its subject's
    at the next start, so a forget after it shreds it."""
    config = site_file(tmp_path, site_doc(master))
    async with running_site(tmp_path, config.read_text(encoding="utf-8")) as rt:
        rules = rt.components["rules"]
        rules.put(RULES[0], "test", "create")
        payload = {"systolic_mmhg": SYSTOLIC, "resident": RESIDENT}
        rt.hub.ingest([Event("blood_pressure", "kiosk-1", payload=payload, ts=time.time())])
        await until_async(
            lambda: asyncio.to_thread(lambda: "bp-watch" in rules.store.load_states()), what="the state saved"
        )
        # as an earlier version stored it: the same record under the site's key
        ((key, args),) = [(k, st.args) for k, st in rules.store.load_states()["bp-watch"].items()]
        from edge.privacy.atrest import seal_text

        text = __import__("json").dumps(args, default=str, ensure_ascii=False)
        sealed = seal_text(rt.state.path, text, f"rule_state\x00bp-watch\x00{key}")
        with rt.state.lock:
            rt.state.conn.execute("UPDATE rule_state SET args=? WHERE rule_id='bp-watch'", (sealed,))
    async with running_site(tmp_path, config.read_text(encoding="utf-8")):
        pass  # the start reads the rule states, and seals this one again
    done = await asyncio.to_thread(edge_cli, "privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr
    assert saved_states(tmp_path, master)["bp-watch"] is None
