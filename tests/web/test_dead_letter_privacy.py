"""A dead letter holds a record as it was sent; the sync API shows it to each caller only up to
the caller's class, and audits what it showed above public."""

from __future__ import annotations

import time
from pathlib import Path

from edge import audit
from edge.sync import deadletters
from tests.support.site import running_site
from tests.web.conftest import signed_in_roles
from tests.web.test_privacy import SITE

PATH = "/api/v1/sync/dead-letters"


async def test_dead_letters_are_shown_only_up_to_the_callers_class(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        now = time.time()
        deadletters.ensure(rt.state)
        deadletters.add(
            rt.state,
            "central",
            7,
            {
                "seq": 7,
                "ts": now,
                "type": "reading",
                "point": "kiosk-1.last_systolic",
                "value": 181,
                "quality": "good",
            },
            400,
            "rejected",
        )
        async with signed_in_roles(rt) as clients:
            seen = {
                role: (await c.json("GET", PATH))["dead_letters"][0]["record"] for role, c in clients.items()
            }
        entries = audit.entries(rt.state)
    assert seen["admin"]["value"] == 181
    for role in ("technician", "viewer"):
        assert seen[role]["value"] is None and seen[role]["redacted"] == "sensitive", seen[role]
    reads = [e for e in entries if e["action"] == "read" and e["target"] == f"GET {PATH}"]
    assert [(e["actor"], e["detail"]["classes"]) for e in reads] == [("boss", {"sensitive": 1})]
