"""A rule action that fails says why in its `rule_action_failed` event, classed like its firing;
the gateway log, which journald keeps beyond every class and retention, gets the reason only of a
public firing: for one that read a blood pressure it names the rule, the action, its target and
the kind of failure, never the value the action computed (the reading, the resident's id)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from edge.model import Reading
from tests.privacy.conftest import PUBLIC_MARK, RESIDENT, SYSTOLIC, measurement, site_doc
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async

DOOR = """
  - id: door-1
    driver: sim
    points:
      - {name: limit, type: float, signal: constant, value: 1, interval: 1h, writable: true}
"""
QUOTE = "str(payload['systolic_mmhg']) + ' ' + payload['resident']"
RULES: list[dict[str, Any]] = [
    {
        "id": "bp-note",
        "when": [{"event": "blood_pressure"}],
        "notify": "always",
        "then": [{"set": {"point": "virt.bp_note", "type": "float", "expr": QUOTE}}],
    },
    {
        "id": "bp-write",
        "when": [{"event": "blood_pressure"}],
        "notify": "always",
        "then": [{"write": {"point": "door-1.limit", "expr": QUOTE}}],
    },
    {  # a public firing: its reason quotes nothing private, and stays in the log
        "id": "door-note",
        "when": "kiosk-1.in_use",
        "if": "value",
        "then": [{"set": {"point": "virt.door_note", "type": "int", "expr": f"'{PUBLIC_MARK}'"}}],
    },
]


async def test_a_failed_action_of_a_private_firing_logs_no_value(
    tmp_path: Path, master: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = site_file(tmp_path, site_doc(master) + DOOR)
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:
        rules = rt.components["rules"]
        for rule in RULES:
            rules.put(rule, "test", "create")
        now = time.time()
        rt.hub.ingest([measurement(now), Reading(now, "kiosk-1.in_use", True)])

        async def failures() -> dict[str, str]:
            await rt.journal.flush()
            return {
                r["payload"]["rule"]: r["payload"]["error"]
                for r in rt.journal.tail(200)
                if r.get("kind") == "rule_action_failed"
            }

        async def all_failed() -> bool:
            return (await failures()).keys() == {"bp-note", "bp-write", "door-note"}

        await until_async(all_failed, what="the three actions failed and journaled")
        journaled = await failures()

    # the events keep the reason, for whoever may read the firing's class
    assert f"{SYSTOLIC} {RESIDENT}" in journaled["bp-note"] and RESIDENT in journaled["bp-write"]
    logged = [r.getMessage() for r in caplog.records]
    assert [m for m in logged if RESIDENT in m or str(SYSTOLIC) in m] == []
    (note,) = [m for m in logged if m.startswith("rule bp-note ")]
    assert "then[0] (set virt.bp_note) failed: ValueError" in note and "withheld" in note, note
    assert "sensitive" in note, note
    (write,) = [m for m in logged if m.startswith("rule bp-write ")]
    assert "then[0] (write door-1.limit) failed: write rejected" in write and "withheld" in write, write
    (public,) = [m for m in logged if m.startswith("rule door-note ")]
    assert PUBLIC_MARK in public and "withheld" not in public, public
