"""A rule's error quotes what its firing read (a plate, a resident id): an answer that shows it to a
caller whose class allows it is audited as a read, one entry per answer with the errors shown per
class, as the events and alerts routes audit what they show (PIPL art. 51). An answer that shows
no error above public (a viewer's, whose errors are withheld) writes nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge import audit
from edge.model import Event
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import signed_in_roles
from tests.web.test_privacy import KIOSK

SITE = "site: {id: rule-error-audit}" + KIOSK
BASE = "/api/v1/rules"
PLATE = "沪A40745"
RESIDENT = "r-0305"


def failing(rule_id: str, kind: str, field: str) -> dict[str, Any]:
    """A rule whose condition fails on `kind`'s `field`, quoting it in its error."""
    return {
        "id": rule_id,
        "when": [{"event": kind}],
        "if": f"int(payload['{field}']) > 0",
        "then": [{"alert": "x"}],
    }


def reads(rt: Any) -> list[tuple[str, str, dict[str, int]]]:
    """(actor, route, classes) of each read entry, oldest first."""
    entries = audit.entries(rt.state, 100, action="read")
    return [(e["actor"], e["target"], e["detail"]["classes"]) for e in reversed(entries)]


async def test_a_rule_error_shown_above_public_is_audited_as_a_read(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        comp = rt.components["rules"]
        async with signed_in_roles(rt) as clients:
            admin, tech, viewer = clients["admin"], clients["technician"], clients["viewer"]
            await admin.json("POST", BASE, failing("plate-check", "visit", "plate"), expect=201)
            await admin.json("POST", BASE, failing("bp-check", "blood_pressure", "resident"), expect=201)
            rt.hub.publish_event(Event("visit", "gate-1", payload={"plate": PLATE, "privacy": "personal"}))
            rt.hub.publish_event(
                Event(
                    "blood_pressure",
                    "kiosk-1",
                    payload={"resident": RESIDENT, "systolic_mmhg": 150},
                    ts=time.time(),
                )
            )
            rules = comp.engine.rules
            await until(lambda: rules["plate-check"].error and rules["bp-check"].error)
            assert reads(rt) == []

            # the admin sees both errors: one entry per answer, each error at its class
            listed = await admin.json("GET", BASE)
            assert {r["id"]: r["error"] for r in listed["rules"]} == {
                "bp-check": rules["bp-check"].error,
                "plate-check": rules["plate-check"].error,
            }
            assert RESIDENT in rules["bp-check"].error and PLATE in rules["plate-check"].error
            one = await admin.json("GET", f"{BASE}/bp-check")
            assert RESIDENT in one["error"]
            assert reads(rt) == [
                ("boss", f"GET {BASE}", {"personal": 1, "sensitive": 1}),
                ("boss", f"GET {BASE}/bp-check", {"sensitive": 1}),
            ]

            # a viewer is shown neither error: nothing to audit
            listed = await viewer.json("GET", BASE)
            assert all(r["error"] is None and r["redacted"] for r in listed["rules"]), listed
            assert len(reads(rt)) == 2

            # a technician's own rule, its error shown in a GET and in the answer of a change
            await tech.json("POST", BASE, failing("visit-check", "visit", "plate"), expect=201)
            rt.hub.publish_event(Event("visit", "gate-1", payload={"plate": PLATE, "privacy": "personal"}))
            await until(lambda: rules["visit-check"].error)
            shown = await tech.json("GET", f"{BASE}/visit-check")
            assert PLATE in shown["error"]
            renamed = await tech.json(
                "PUT", f"{BASE}/visit-check", {**failing("visit-check", "visit", "plate"), "name": "Visits"}
            )
            assert renamed["state"] == "error" and PLATE in renamed["error"], renamed
            assert reads(rt)[2:] == [
                ("technician", f"GET {BASE}/visit-check", {"personal": 1}),
                ("technician", f"PUT {BASE}/visit-check", {"personal": 1}),
            ]
