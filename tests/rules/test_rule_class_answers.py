"""The answer to a rule change shows the rule as GET shows it to that caller: of a rule reading
above the caller's class, no state, last firing or error — a technician disabling the
blood-pressure rule does not learn when it last fired."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Event
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import signed_in_roles
from tests.web.test_privacy import KIOSK

SITE = "site: {id: rule-answers}" + KIOSK
BASE = "/api/v1/rules"
BP_HIGH = {
    "id": "bp-high",
    "when": [{"event": "blood_pressure"}],
    "if": "payload.get('systolic_mmhg', 0) > 140",
    "then": [{"alert": "high"}],
}
# an error that quotes a personal plate: the rule reads nothing above public before it runs
VISIT = {
    "id": "visit",
    "when": [{"event": "visit"}],
    "if": "int(payload.get('plate')) > 0",
    "then": [{"alert": "x"}],
}


def _withheld(shown: dict[str, Any]) -> dict[str, Any]:
    return {k: shown.get(k) for k in ("state", "last_fired", "error", "redacted")}


async def test_a_change_answers_with_the_rule_as_get_shows_it(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        comp = rt.components["rules"]
        async with signed_in_roles(rt) as clients:
            tech, admin = clients["technician"], clients["admin"]
            await admin.json("POST", BASE, BP_HIGH, expect=201)
            await admin.json("POST", BASE, VISIT, expect=201)
            rt.hub.publish_event(
                Event("blood_pressure", "kiosk-1", payload={"systolic_mmhg": 181}, ts=time.time())
            )
            rt.hub.publish_event(
                Event("visit", "gate-1", payload={"plate": "沪A12345", "privacy": "personal"})
            )
            await until(lambda: comp.engine.rules["bp-high"].last_fired and comp.engine.rules["visit"].error)

            answer = await tech.json("POST", f"{BASE}/bp-high/disable")
            assert answer["enabled"] is False
            assert _withheld(answer) == _withheld(await tech.json("GET", f"{BASE}/bp-high"))
            assert answer["last_fired"] is None and answer["redacted"] is True, answer

            # a `rules` token (public) renames the visit rule: its error is kept, and withheld
            token = create_token(rt.state, "integrator", ["read", "rules"])
            headers = {"Authorization": f"Bearer {token}"}
            url = f"http://127.0.0.1:{rt.web_port}{BASE}/visit"
            async with session.put(url, json={**VISIT, "name": "Visits"}, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
            assert answer["state"] == "error" and answer["error"] is None and answer["redacted"] is True, (
                answer
            )
            assert "沪A12345" in (await tech.json("GET", f"{BASE}/visit"))["error"]
