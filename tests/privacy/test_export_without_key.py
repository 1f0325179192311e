"""A resident's copy (PIPL art. 45) on a site without a master key (the default): its records are
in clear, and the admin API and `edge privacy export` hand them over as they are, audited like an
export with the key (one `privacy_export` entry naming the subject by a pseudonym, never the
reference). A forget there has no key to delete: it erases nothing, changes nothing, and says so,
with how many records name the subject and how to set a key."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson

from edge import audit
from edge.state import StateDB
from tests.privacy.conftest import GATE_PLATE, OTHER_PLATE
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async
from tests.web.conftest import signed_in_roles

EXPORT = "/api/v1/privacy/subjects/export"
FORGET = "/api/v1/privacy/subjects/forget"

SITE = f"""
site: {{id: clear-site}}
devices:
  - id: gate-1
    driver: sim
    points:
      - {{name: last_plate, type: str, signal: step, values: [{GATE_PLATE}, {OTHER_PLATE}], period: 40ms,
         interval: 20ms, privacy: personal}}
    events:
      - {{kind: vehicle_passage, every: 30ms, payload: {{plate: {GATE_PLATE}, direction: in, privacy: personal}}}}
"""


def kinds(lines: list[dict[str, Any]]) -> set[str]:
    return {str(r.get("kind") or r.get("point")) for r in lines}


def exports_and_forgets(state: StateDB) -> list[dict[str, Any]]:
    return [e for e in audit.entries(state) if e["action"] in ("privacy_export", "privacy_forget")]


async def test_a_site_without_a_master_key_exports_a_residents_records_in_clear(tmp_path: Path) -> None:
    config = site_file(tmp_path, SITE)
    async with running_site(tmp_path, config.read_text(encoding="utf-8")) as rt:

        async def passages_held() -> bool:
            await rt.journal.flush()
            records = rt.journal.read(0, 10_000)
            return any(r.get("kind") == "vehicle_passage" for r in records) and any(
                r.get("value") == GATE_PLATE for r in records
            )

        await until_async(passages_held, what="the gate's passages and plate readings journaled")
        assert rt.state is not None
        async with signed_in_roles(rt) as clients:
            resp = await clients["admin"].request("POST", EXPORT, json={"subject": GATE_PLATE})
            assert resp.status == 200, await resp.text()
            exported = [orjson.loads(line) for line in (await resp.text()).splitlines()]
            assert kinds(exported) == {"vehicle_passage", "gate-1.last_plate"}
            assert all(r.get("value") == GATE_PLATE or r["payload"]["plate"] == GATE_PLATE for r in exported)
            assert resp.headers["X-Records"] == str(len(exported))
            assert GATE_PLATE not in resp.headers["Content-Disposition"]

            # no key to delete: nothing is erased, nothing is audited, and the answer says why
            before = exports_and_forgets(rt.state)
            resp = await clients["admin"].request("POST", FORGET, json={"subject": GATE_PLATE})
            assert resp.status == 409
            problem = await resp.json()
            assert problem["message_key"] == "msg.privacy.encryption_off"
            assert "nothing was erased" in problem["detail"]
            assert "set privacy.master_key_file" in problem["detail"]
            assert exports_and_forgets(rt.state) == before
        [api_export] = before
        assert api_export["action"] == "privacy_export" and api_export["actor"] == "boss"
        assert api_export["target"].startswith("ps_")

    done = edge_cli("privacy", "export", "-c", str(config), "--subject", GATE_PLATE)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert kinds(lines) == {"vehicle_passage", "gate-1.last_plate"}
    assert "read as stored, in clear" in done.stderr

    forget = edge_cli("privacy", "forget", "-c", str(config), "--subject", GATE_PLATE)
    assert forget.returncode == 1
    assert "nothing was erased" in forget.stderr
    kept = re.search(r"\((\d+) records? naming the subject", forget.stderr)
    assert kept is not None and int(kept.group(1)) == len(lines), forget.stderr
    assert edge_cli("privacy", "export", "-c", str(config), "--subject", GATE_PLATE).stdout == done.stdout

    state = StateDB(str(tmp_path / "state.db"))
    try:
        entries = exports_and_forgets(state)
    finally:
        state.close()
    # the command's two exports and the API's, under one pseudonym; the refused forget wrote nothing
    assert [(e["actor"], e["action"]) for e in entries] == [("cli", "privacy_export")] * 2 + [
        ("boss", "privacy_export")
    ]
    assert {e["target"] for e in entries} == {api_export["target"]}
    assert entries[-1]["detail"]["records"] == len(exported)
    assert GATE_PLATE not in orjson.dumps(entries).decode()
