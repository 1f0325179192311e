"""The privacy API of a running sealed site over HTTP: the record of processing, a resident's
export and erasure. Only an admin reaches them; the export opens the resident's sealed records;
after forget the same records read as erased and the export is empty; every call is audited
under the resident's pseudonym, never their reference."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from edge import audit
from edge.api import privacy_routes
from tests.privacy.conftest import PLATE, RESIDENT, SYSTOLIC, measurement, private_records, site_doc
from tests.support.site import running_site
from tests.support.waiting import until_async
from tests.web.conftest import signed_in_roles

OTHER = "R-20333"  # a second resident, who is not forgotten
EXPORT = "/api/v1/privacy/subjects/export"
FORGET = "/api/v1/privacy/subjects/forget"
REPORT = "/api/v1/privacy/report"


def jsonl(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines()]


async def test_admin_exports_and_forgets_a_resident_others_are_refused(
    tmp_path: Path, master: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_site(tmp_path, site_doc(master)) as rt, signed_in_roles(rt) as clients:
        rt.hub.ingest([*private_records(), measurement(resident=OTHER, systolic=128)])
        await rt.journal.flush()
        admin = clients["admin"]

        for role in ("technician", "viewer"):
            for method, path, body in (("GET", REPORT, None), ("POST", EXPORT, {"subject": RESIDENT})):
                resp = await clients[role].request(method, path, json=body)
                assert resp.status == 403, (role, path, await resp.text())
            resp = await clients[role].request("POST", FORGET, json={"subject": RESIDENT})
            assert resp.status == 403, role

        report = await admin.json("GET", REPORT)
        assert report["site"] == "sealed-site"
        assert report["classes"]["sensitive"]["encrypted_at_rest"] is True
        assert report["classes"]["sensitive"]["held"] >= 2
        assert "kiosk-1.last_systolic" in {p["point"] for p in report["points"]}

        for bad in ({}, {"subject": ""}, {"subject": 5}, {"subject": RESIDENT, "more": 1}):
            resp = await admin.request("POST", EXPORT, json=bad)
            assert resp.status == 400, bad
            assert "subject" in (await resp.json())["detail"]

        resp = await admin.request("POST", EXPORT, json={"subject": RESIDENT})
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/x-ndjson"
        assert "attachment" in resp.headers["Content-Disposition"]
        assert RESIDENT not in resp.headers["Content-Disposition"]
        exported = jsonl(await resp.text())
        kinds = sorted(r["kind"] for r in exported)
        assert kinds == ["blood_pressure"], kinds
        assert exported[0]["payload"]["systolic_mmhg"] == SYSTOLIC  # opened: the key is there
        assert resp.headers["X-Records"] == "1"
        # more than the cap: refused whole, and the refusal says where the rest can be had
        monkeypatch.setattr(privacy_routes, "MAX_EXPORT_RECORDS", 0)
        resp = await admin.request("POST", EXPORT, json={"subject": RESIDENT})
        assert resp.status == 413 and "edge privacy export" in (await resp.json())["detail"]
        monkeypatch.undo()

        done = await admin.json("POST", FORGET, {"subject": RESIDENT})
        assert done["had_key"] is True and done["subject"].startswith("ps_")
        assert RESIDENT not in orjson.dumps(done).decode()

        resp = await admin.request("POST", EXPORT, json={"subject": RESIDENT})
        assert resp.status == 200 and await resp.text() == ""
        records = rt.journal.read(0, 1000)
        bps = [r["payload"] for r in records if r.get("kind") == "blood_pressure"]
        assert {"erased": True} in bps  # the forgotten resident's measurement: erased, not an error
        assert [p["resident"] for p in bps if "resident" in p] == [OTHER]
        assert any(r.get("kind") == "vehicle_passage" and r["payload"]["plate"] == PLATE for r in records)

        async def notice() -> bool:
            await rt.journal.flush()
            return any(r.get("kind") == "subject_erased" for r in rt.journal.read(0, 1000))

        await until_async(notice, timeout=10)

        entries = audit.entries(rt.state, limit=200)
        actions = [(e["actor"], e["action"], e["target"]) for e in entries]
        assert ("boss", "read", f"GET {REPORT}") in actions
        exports = [e for e in entries if e["action"] == "privacy_export"]
        forgets = [e for e in entries if e["action"] == "privacy_forget"]
        assert len(exports) == 2 and len(forgets) == 1, actions  # the refused export wrote nothing
        assert {e["target"] for e in exports + forgets} == {done["subject"]}
        assert RESIDENT not in orjson.dumps(entries).decode()


async def test_a_site_without_a_master_key_says_how_to_seal(tmp_path: Path) -> None:
    doc = site_doc(tmp_path / "unused.key").replace(
        "privacy:\n  master_key_file: " + str(tmp_path / "unused.key") + "\n", ""
    )
    async with running_site(tmp_path, doc) as rt, signed_in_roles(rt) as clients:
        resp = await clients["admin"].request("POST", FORGET, json={"subject": RESIDENT})
        assert resp.status == 409
        assert "privacy.master_key_file" in (await resp.json())["detail"]
        report = await clients["admin"].json("GET", REPORT)
        assert report["classes"]["sensitive"]["encrypted_at_rest"] is False
