"""A dry run on a site that seals personal and sensitive records at rest sees them as the live
engine saw them: the gateway opens, for its dry run's process, the sealed records the rule reads
(payloads, values, and the readings that fill its windows before the range). Each record counts at
the class the journal stored it with, so a caller below it is refused and the read is audited,
even once its content no longer opens (a forgotten plate's passages)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from edge import audit
from edge.api.tokens import create_token
from edge.model import Event, Reading
from tests.privacy.conftest import sealed_site_text
from tests.store.helpers import sql
from tests.support.site import KIOSK_DEVICE, running_site
from tests.web.conftest import signed_in_roles

ROOT = Path(__file__).resolve().parents[2]
DRY_RUN = "/api/v1/rules/dry-run"
PLATE = "沪B98765"
GATE = """
  - id: gate-1
    driver: sim
    points:
      - {name: last_plate, type: str, signal: constant, value: "-", interval: 1h, privacy: personal}
"""
SITE = sealed_site_text("dry-run-sealed", KIOSK_DEVICE + GATE)


def _site(tmp_path: Path) -> str:
    from edge.privacy.keyfile import create_master_key

    create_master_key(tmp_path / "master.key")
    return SITE.replace("MASTER", str(tmp_path / "master.key"))


def _shipped(rule_id: str) -> dict[str, Any]:
    pack = yaml.safe_load((ROOT / "deploy" / "rules" / "health.yaml").read_text(encoding="utf-8"))
    return next(r for r in pack["rules"] if r["id"] == rule_id)


def _rule(rule_id: str, when: Any, cond: str | None, alert: str) -> dict[str, Any]:
    doc = {"id": rule_id, "when": when, "notify": "always", "then": [{"alert": alert}]}
    if cond is not None:
        doc["if"] = cond
    return {"hours": 1, "rule": doc}


PASSAGES = _rule("vp", [{"event": "vehicle_passage"}], None, "plate [{payload[plate]}]")


def _passage(ts: float) -> Event:
    return Event("vehicle_passage", "gate-1", payload={"plate": PLATE, "privacy": "personal"}, ts=ts)


def _reads(rt: Any, rule: str) -> list[dict[str, Any]]:
    return [
        e
        for e in audit.entries(rt.state)
        if e["action"] == "read" and e["target"].endswith(DRY_RUN) and e["detail"].get("rule") == rule
    ]


async def _by_token(session: aiohttp.ClientSession, rt: Any, body: dict[str, Any]) -> tuple[int, Any]:
    assert rt.state is not None
    token = create_token(rt.state, "integrator", ["read", "rules"])  # public: no admin scope
    headers = {"Authorization": f"Bearer {token}"}
    async with session.post(f"http://127.0.0.1:{rt.web_port}{DRY_RUN}", json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_dry_run_sees_sealed_records_as_the_live_engine_did(tmp_path: Path) -> None:
    async with running_site(tmp_path, _site(tmp_path)) as rt, aiohttp.ClientSession() as session:
        now = time.time()
        records: list[Reading | Event] = []
        for i in range(4):
            payload = {"systolic_mmhg": 197, "diastolic_mmhg": 131, "resident": "r-DRY0001"}
            records.append(Event("blood_pressure", "kiosk-1", payload=payload, ts=now - 300 + i))
        for i in range(5):
            records.append(Reading(now - 200 + i, "gate-1.last_plate", PLATE))
            records.append(_passage(now - 100 + i))
        # a window's past, before the dry run's hour, and the one reading that asks about it
        records += [Reading(now - 3650 + i, "kiosk-1.last_systolic", 250.0) for i in range(5)]
        records.append(Reading(now - 3500, "kiosk-1.in_use", True))
        rt.hub.ingest(records)
        await rt.journal.flush()
        sealed = sql(rt.journal, "SELECT count(*) FROM journal WHERE typeof(payload) = 'blob'")[0][0]
        sealed += sql(rt.journal, "SELECT count(*) FROM journal WHERE typeof(value) = 'blob'")[0][0]
        assert sealed >= 4 + 5 + 5 + 5, sealed  # the site seals them: the journal holds no clear copy

        async with signed_in_roles(rt) as clients:
            admin, tech = clients["admin"], clients["technician"]

            # the shipped rule fires on each of the sealed measurements that fired it live
            body = await admin.json("POST", DRY_RUN, {"rule": _shipped("bp-very-high"), "hours": 1})
            assert body["firings_total"] == 4, body
            assert all(f["privacy"] == "sensitive" and "197/131" in f["message"] for f in body["firings"])
            (read,) = _reads(rt, "bp-very-high")
            assert read["actor"] == "boss" and read["detail"]["classes"] == {"sensitive": 4}

            # a window filled before the range with a sensitive point's sealed values
            window = _rule(
                "win", "kiosk-1.in_use", "value and avg('kiosk-1.last_systolic', '2h') > 190", "hi"
            )
            body = await admin.json("POST", DRY_RUN, window)
            assert [f["ts"] for f in body["firings"]] == [now - 3500], body

            # a personal string point's sealed values
            plate = _rule("lp", "gate-1.last_plate", f"value == '{PLATE}'", "{value}")
            body = await tech.json("POST", DRY_RUN, plate)
            assert body["firings_total"] == 5, body
            assert {(f["privacy"], f["message"]) for f in body["firings"]} == {("personal", PLATE)}

            # personal events: judged on their payload, at their class, and audited as read
            body = await tech.json("POST", DRY_RUN, PASSAGES)
            assert body["firings_total"] == 5, body
            assert {(f["privacy"], f["message"]) for f in body["firings"]} == {
                ("personal", f"plate [{PLATE}]")
            }
            (read,) = _reads(rt, "vp")
            assert read["actor"] == "technician" and read["detail"]["classes"] == {"personal": 5}

        # a caller below their class is refused, and reads nothing
        status, body = await _by_token(session, rt, PASSAGES)
        assert status == 403 and "firings" not in body, body
        assert body["refused"] == ["event:vehicle_passage (personal)"]
        assert len(_reads(rt, "vp")) == 1


async def test_records_keep_their_class_once_their_content_no_longer_opens(tmp_path: Path) -> None:
    async with running_site(tmp_path, _site(tmp_path)) as rt, aiohttp.ClientSession() as session:
        now = time.time()
        rt.hub.ingest([_passage(now - 100 + i) for i in range(3)])
        await rt.journal.flush()
        async with signed_in_roles(rt) as clients:
            admin = clients["admin"]
            await admin.json("POST", "/api/v1/privacy/subjects/forget", {"subject": PLATE})
            assert {r["payload"].get("erased") for r in rt.journal.read(0, 1000) if r.get("kind")} >= {True}

            # the passages read as erased, and their class is still the journal's
            status, body = await _by_token(session, rt, PASSAGES)
            assert status == 403 and body["refused"] == ["event:vehicle_passage (personal)"], body
            body = await admin.json("POST", DRY_RUN, PASSAGES)
            assert body["firings_total"] == 3 and {f["privacy"] for f in body["firings"]} == {"personal"}
            (read,) = _reads(rt, "vp")
            assert read["detail"]["classes"] == {"personal": 3}
