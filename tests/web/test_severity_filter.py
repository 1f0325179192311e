"""Filtering the events by severity or source matches only rows the caller sees in full: a row
whose severity or source is redacted for the caller never matches, so neither which rows a page
holds nor where it ends tells what was hidden; paging back stays whole."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.model import Event, Severity
from tests.support.site import running_site
from tests.web.conftest import signed_in_roles

SITE = """
site: {id: severity-filter}
devices:
  - id: kiosk-1
    driver: sim
    points:
      - {name: in_use, type: bool, signal: constant, value: false, interval: 1h}
"""
HEALTH = {"rule": "bp-very-high", "state": "fired", "privacy": "sensitive", "resident": "R-90417"}


def seqs(body: dict[str, Any]) -> list[int]:
    return [e["seq"] for e in body["events"]]


async def test_a_hidden_severity_or_source_never_matches_a_filter(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_roles(rt) as clients:
        now = time.time()
        rt.hub.ingest(
            [
                Event(
                    "alert",
                    "bp-very-high",
                    Severity.INFO,
                    {"rule": "bp-very-high", "state": "cleared"},
                    now - 4,
                ),
                Event(
                    "alert", "door-open", Severity.CRITICAL, {"rule": "door-open", "state": "fired"}, now - 3
                ),
                Event("alert", "bp-very-high", Severity.CRITICAL, HEALTH, now - 2),
                Event("alert", "bp-high", Severity.WARNING, {**HEALTH, "rule": "bp-high"}, now - 1),
            ]
        )
        await rt.journal.flush()
        admin, viewer = clients["admin"], clients["viewer"]
        cleared, door, health, _warning = sorted(seqs(await admin.json("GET", "/api/v1/events?kind=alert")))
        assert seqs(await admin.json("GET", "/api/v1/events?severity=critical&limit=1")) == [health]

        async def shown(query: str) -> list[int]:
            return seqs(await viewer.json("GET", "/api/v1/events?" + query))

        # the newest critical the viewer may see as critical: the health alert is not one of them
        assert await shown("severity=critical&limit=1") == [door]
        # asked just above and just below the hidden alert: the same answer, whatever it hides
        for sev in ("critical", "warning", "info"):
            assert await shown(f"severity={sev}&before={health + 1}&limit=1") == await shown(
                f"severity={sev}&before={health}&limit=1"
            ), sev
        assert await shown(f"source=bp-very-high&before={health + 1}&limit=1") == [cleared]
        assert await shown(f"source=bp-very-high&before={health}&limit=1") == [cleared]
        # paging back one by one lists every critical the viewer sees, none twice, none left out
        pages, before = [], health + 10
        while page := await shown(f"severity=critical&before={before}&limit=1"):
            pages += page
            before = page[-1]
        assert pages == [door]
        listed = await viewer.json("GET", "/api/v1/events?severity=critical")
        assert all(e["severity"] == "critical" for e in listed["events"])
