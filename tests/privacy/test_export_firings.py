"""A resident's export (PIPL art. 45) lists what a rule's firing on their records left — its alert,
its `rule_error` — though it names them in no field: it is sealed under their data key, which is
how the export finds it (and how forget shreds it). Another resident's are not listed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.privacy.conftest import (
    BP_HIGH_RULE,
    BP_ID_RULE,
    RESIDENT,
    SYSTOLIC,
    measure_two_residents,
    site_doc,
)
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async

OTHER = "R-55121"  # a second resident, whose records and alerts are not the first one's
OTHER_SYSTOLIC = 15271
RULES: list[dict[str, Any]] = [
    BP_HIGH_RULE,
    BP_ID_RULE,
]


async def test_export_lists_the_alerts_and_errors_a_residents_records_fired(
    tmp_path: Path, master: Path
) -> None:
    config = site_file(tmp_path, site_doc(master))
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:
        measure_two_residents(rt, RULES, OTHER, OTHER_SYSTOLIC)

        async def fired() -> bool:
            await rt.journal.flush()
            kinds = [r.get("kind") for r in rt.journal.tail(200)]
            return kinds.count("alert") >= 2 and kinds.count("rule_error") >= 2

        await until_async(fired, what="both residents' alerts and rule errors journaled")

    out = tmp_path / "export.jsonl"
    done = await asyncio.to_thread(
        edge_cli, "privacy", "export", "-c", str(config), "--subject", RESIDENT, "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for rec in lines:
        by_kind.setdefault(str(rec.get("kind") or rec.get("type")), []).append(rec)

    assert [r["payload"]["resident"] for r in by_kind["blood_pressure"]] == [RESIDENT]
    # the alert quotes the reading, the error the id; neither names the resident in a field
    alerts = by_kind["alert"]
    assert [(a["source"], f"{SYSTOLIC}/71" in a["payload"]["message"]) for a in alerts] == [("bp-high", True)]
    errors = by_kind["rule_error"]
    assert [(e["source"], RESIDENT in e["payload"]["message"]) for e in errors] == [("bp-id", True)]
    assert all("resident" not in r["payload"] for r in alerts + errors)
    # the other resident's measurement, alert and error are theirs, not in this export
    assert not [
        line for line in lines if OTHER in json.dumps(line) or str(OTHER_SYSTOLIC) in json.dumps(line)
    ]
