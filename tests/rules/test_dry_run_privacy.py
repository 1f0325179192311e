"""A dry run is not an oracle for data above its caller's class: the caller writes the condition, so
whether and when the rule fires would answer yes/no questions about records it may not read. A
technician (personal) and an API token with the `rules` scope (public) are refused a rule that
reads, or is fed, records above their class; an admin keeps the full dry run, audited as a read."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from edge import audit
from edge.api.tokens import create_token
from edge.model import Event, Reading
from tests.support.site import running_site
from tests.web.conftest import signed_in_roles
from tests.web.test_privacy import KIOSK

RESIDENT = "R-MARKER-7731"
# the kiosk of the UI's privacy tests, with a public point beside its sensitive one
SITE = (
    "site: {id: dry-run-privacy}"
    + KIOSK
    + "      - {name: room_temp, signal: constant, value: 21, interval: 1h}\n"
)
DRY_RUN = "/api/v1/rules/dry-run"


def _oracle(systolic: int) -> dict[str, Any]:
    """The question about one resident's blood pressure, asked as a rule."""
    cond = f'payload.get("resident") == "{RESIDENT}" and payload.get("systolic_mmhg", 0) == {systolic}'
    rule = {"id": "x1", "when": [{"event": "blood_pressure"}], "if": cond, "notify": "always"}
    return {"hours": 1, "rule": {**rule, "then": [{"alert": "hi"}]}}


def _rule(rule_id: str, when: Any, cond: str) -> dict[str, Any]:
    doc = {"id": rule_id, "when": when, "if": cond, "notify": "always", "then": [{"alert": "hit"}]}
    return {"hours": 1, "rule": doc}


# a bisection step over a sensitive point, triggered by a public one
BISECT = _rule("x2", "kiosk-1.in_use", "value and p('kiosk-1.last_systolic') > 190")
# a vehicle passage names its class (personal) in its payload: known only from the records
PLATE = _rule("x3", [{"event": "vehicle_*"}], "payload.get('plate') == '沪A12345'")
PUBLIC = _rule("x4", "kiosk-1.room_temp", "value > 21.5")


def _history(rt: Any) -> None:
    now = time.time()
    records: list[Reading | Event] = []
    for i in range(9):
        payload = {"resident": RESIDENT, "systolic_mmhg": 211, "diastolic_mmhg": 90}
        records.append(Event("blood_pressure", "kiosk-1", payload=payload, ts=now - 600 + i))
        records.append(Reading(now - 500 + i, "kiosk-1.last_systolic", 193.7))
        records.append(Reading(now - 400 + i, "kiosk-1.in_use", True))
        records.append(Reading(now - 300 + i, "kiosk-1.room_temp", 22.0 + i))
        plate = {"plate": "沪A12345", "privacy": "personal"}
        records.append(Event("vehicle_passage", "gate-1", payload=plate, ts=now - 200 + i))
    rt.hub.ingest(records)


def _dry_run_reads(rt: Any) -> list[dict[str, Any]]:
    return [e for e in audit.entries(rt.state) if e["action"] == "read" and e["target"].endswith(DRY_RUN)]


async def test_the_oracle_is_refused_below_its_class_and_kept_for_an_admin(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        _history(rt)
        await rt.journal.flush()
        token = create_token(rt.state, "integrator", ["read", "rules"])
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{rt.web_port}"

        async def by_token(body: dict[str, Any]) -> tuple[int, Any]:
            async with session.post(base + DRY_RUN, json=body, headers=headers) as resp:
                return resp.status, await resp.json(content_type=None)

        async with signed_in_roles(rt) as clients:
            tech, admin = clients["technician"], clients["admin"]
            for question in (_oracle(211), _oracle(212), BISECT):
                # the same answer whatever the record holds: refused, naming what it would read
                body = await tech.json("POST", DRY_RUN, question, expect=403)
                assert "firings" not in body and "sensitive" in body["detail"], body
                status, body = await by_token(question)
                assert status == 403 and "firings" not in body, body
            body = await tech.json("POST", DRY_RUN, _oracle(211), expect=403)
            assert body["refused"] == ["event:blood_pressure (sensitive)"]
            body = await tech.json("POST", DRY_RUN, BISECT, expect=403)
            assert body["refused"] == ["point kiosk-1.last_systolic (sensitive)"]

            # a personal class named only in the records' payloads: refused to the public token
            # once the replay says what the trigger took, whether the plate matched or not
            status, body = await by_token(PLATE)
            assert status == 403 and body["refused"] == ["event:vehicle_passage (personal)"], body
            status, body = await by_token({**PLATE, "rule": {**PLATE["rule"], "if": "False"}})
            assert status == 403 and body["refused"] == ["event:vehicle_passage (personal)"], body

            assert not _dry_run_reads(rt)  # nothing was read
            # within the technician's class: allowed, and audited as a read of personal records
            body = await tech.json("POST", DRY_RUN, PLATE)
            assert len(body["firings"]) == 9
            (entry,) = _dry_run_reads(rt)
            assert entry["actor"] == "technician" and entry["detail"]["classes"] == {"personal": 9}

            # a public-only rule dry-runs for both, and reads nothing worth an audit entry
            assert len((await tech.json("POST", DRY_RUN, PUBLIC))["firings"]) == 9
            status, body = await by_token(PUBLIC)
            assert status == 200 and len(body["firings"]) == 9, body
            assert len(_dry_run_reads(rt)) == 1

            # an admin keeps the full dry run, and it is audited as a read of sensitive records
            body = await admin.json("POST", DRY_RUN, _oracle(211))
            assert len(body["firings"]) == 9 and body["firings"][0]["message"] == "hi"
            assert (await admin.json("POST", DRY_RUN, _oracle(212)))["firings"] == []
            assert len((await admin.json("POST", DRY_RUN, BISECT))["firings"]) == 9
            reads = _dry_run_reads(rt)
            assert [e["actor"] for e in reads[:3]] == ["boss"] * 3
            assert reads[2]["detail"]["classes"] == {"sensitive": 9}
            assert reads[2]["detail"]["rule"] == "x1"
