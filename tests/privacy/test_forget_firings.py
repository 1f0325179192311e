"""What a rule's firing leaves — its alert, its `rule_error`, its `rule_action_failed` — quotes the
record that fired it (a blood pressure, the resident's id): it is sealed under the key of the
resident that record names, so forgetting the resident shreds it with the measurement, backups
included, while another resident's stay readable; and it carries no field naming the resident,
which a recipient of the alert would receive."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from edge.privacy.atrest import Sealer
from edge.store.journal import Journal
from edge.store.rows import register, unregister
from tests.privacy.conftest import (
    BP_HIGH_RULE,
    BP_ID_RULE,
    RESIDENT,
    SITE_FILE,
    SYSTOLIC,
    measure_two_residents,
    plaintext_in,
    site_doc,
)
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async

OTHER = "R-55120"  # a second resident, not forgotten
OTHER_SYSTOLIC = 15263
FIRING_KINDS = ("alert", "rule_error", "rule_action_failed")
RULES: list[dict[str, Any]] = [
    BP_HIGH_RULE,
    BP_ID_RULE,
    {  # an action whose failure quotes the reading and the id
        "id": "bp-note",
        "when": [{"event": "blood_pressure"}],
        "notify": "always",
        "then": [
            {
                "set": {
                    "point": "virt.bp_note",
                    "type": "float",
                    "expr": "str(payload['systolic_mmhg']) + ' ' + payload['resident']",
                }
            }
        ],
    },
]


def firing_records(journal_path: Path, site_journal: Path, master: Path) -> list[tuple[str, dict[str, Any]]]:
    """(kind, payload) of the firings' records in a journal file (the site's, or a copy of it) as
    the site's keys (its `keys.db`) open them."""
    sealer = Sealer.open(site_journal, str(master))
    register(journal_path, sealer)
    journal = Journal.open_readonly(str(journal_path))
    try:
        return [(r["kind"], r["payload"]) for r in journal.read(0, 100_000) if r.get("kind") in FIRING_KINDS]
    finally:
        journal.close_sync()
        unregister(journal_path, sealer)
        sealer.close()


def quoting(records: list[tuple[str, dict[str, Any]]], *marks: object) -> list[str]:
    """The kinds of the records whose payload quotes one of `marks`."""
    return sorted(kind for kind, p in records if any(str(m) in json.dumps(p) for m in marks))


async def test_forget_shreds_the_alerts_and_errors_a_residents_measurement_fired(
    tmp_path: Path, master: Path
) -> None:
    config = site_file(tmp_path, site_doc(master))
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:
        measure_two_residents(rt, RULES, OTHER, OTHER_SYSTOLIC)

        async def all_journaled() -> bool:
            await rt.journal.flush()
            kinds = [r["kind"] for r in rt.journal.tail(200) if r.get("kind") in FIRING_KINDS]
            return (
                kinds.count("alert") >= 2 and "rule_error" in kinds and kinds.count("rule_action_failed") >= 2
            )

        await until_async(all_journaled, what="both residents' alerts, an error and failed actions journaled")
    assert plaintext_in(tmp_path, skip=SITE_FILE) == []  # sealed, every copy on disk
    backup = tmp_path / "backup"
    backup.mkdir()
    shutil.copy(tmp_path / "edge.db", backup / "edge.db")  # the gateway stopped: one file holds it all

    held = firing_records(tmp_path / "edge.db", tmp_path / "edge.db", master)
    assert quoting(held, SYSTOLIC, RESIDENT) == ["alert", "rule_action_failed", "rule_error"]
    others = quoting(held, OTHER_SYSTOLIC, OTHER)
    assert others.count("alert") == 1 and others.count("rule_action_failed") == 1
    # the resident is named in no field: the alert as a recipient receives it quotes no id
    assert [p for kind, p in held if kind == "alert" and (RESIDENT in json.dumps(p) or "subject" in p)] == []

    done = await asyncio.to_thread(edge_cli, "privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr
    assert "0 records name it outside its key" in done.stdout

    for copy in (tmp_path / "edge.db", backup / "edge.db"):
        after = firing_records(copy, tmp_path / "edge.db", master)
        assert quoting(after, SYSTOLIC, RESIDENT) == [], copy
        erased = sorted(kind for kind, p in after if p == {"erased": True})
        assert erased == ["alert", "rule_action_failed", "rule_error"], copy
        assert quoting(after, OTHER_SYSTOLIC, OTHER) == others, copy  # the other resident's stay
