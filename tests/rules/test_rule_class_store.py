"""A rule cannot launder data through being stored: a technician or a `rules` token may not store
or enable a rule that reads above their class (the check a dry run makes), by any way in; and
what a firing leaves besides its actions — its error, a failed action, the command of its
`write:` — is as private as what it read, so viewers and public consumers never see a blood
pressure quoted in it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Event, Privacy, event_privacy
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import signed_in_roles
from tests.web.test_privacy import KIOSK

SITE = (
    "site: {id: rule-class}"
    + KIOSK
    + """\
  - id: gate-1
    driver: sim
    points:
      - {name: barrier_open, type: bool, signal: constant, value: false, writable: true}
"""
)
BASE = "/api/v1/rules"
QUOTE = "str(payload.get('systolic_mmhg')) + '/' + str(payload.get('diastolic_mmhg')) + ' ' + str(payload.get('resident'))"
BP = {"systolic_mmhg": 121, "diastolic_mmhg": 71, "resident": "r-0298"}
MARK = "121/71 r-0298"


def _bp_error_rule(rule_id: str, **extra: Any) -> dict[str, Any]:
    """A rule whose condition fails with the measurement in its message."""
    return {
        "id": rule_id,
        "when": [{"event": "blood_pressure"}],
        "if": f"int({QUOTE}) > 0",
        "then": [{"event": {"kind": "noop", "message": "x"}}],
        **extra,
    }


BP_WRITE = {
    "id": "bp-write",
    "when": [{"event": "blood_pressure"}],
    "notify": "always",
    "then": [{"write": {"point": "gate-1.barrier_open", "expr": QUOTE}}],
}
PUBLIC_RULE = {"id": "pub", "when": "kiosk-1.in_use", "if": "value", "then": [{"alert": "in use"}]}


async def test_a_rule_above_its_authors_class_is_refused_by_every_way_in(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        comp = rt.components["rules"]
        token = create_token(rt.state, "integrator", ["read", "rules"])
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{rt.web_port}"

        async def by_token(method: str, path: str, **kw: Any) -> tuple[int, Any]:
            kw["headers"] = {**headers, **kw.get("headers", {})}
            async with session.request(method, base + path, **kw) as resp:
                return resp.status, await resp.json(content_type=None)

        async with signed_in_roles(rt) as clients:
            tech, admin = clients["technician"], clients["admin"]
            below_sensitive = (
                _bp_error_rule("bp-err"),
                BP_WRITE,
                # a wildcard takes the health measurements too
                {**_bp_error_rule("any-err"), "when": [{"event": "*"}]},
                # a reading trigger that reads a sensitive point
                {**PUBLIC_RULE, "id": "reads", "if": "p('kiosk-1.last_systolic') > 140"},
            )
            for doc in below_sensitive:
                body = await tech.json("POST", BASE, doc, expect=403)
                assert body["title"] == "Rule above your privacy class" and body["allowed"] == "personal"
                assert body["message_key"] == "msg.rules.above_class", body
                assert "sensitive" in body["detail"], body
                status, body = await by_token("POST", BASE, json=doc)
                assert status == 403 and body["allowed"] == "public", body
            body = await tech.json("POST", BASE, BP_WRITE, expect=403)
            assert body["refused"] == ["event:blood_pressure (sensitive)"]
            assert comp.store.list_rules() == []

            # a public rule is the caller's to store; making it read above their class is refused
            await tech.json("POST", BASE, PUBLIC_RULE, expect=201)
            await tech.json("PUT", f"{BASE}/pub", {**_bp_error_rule("pub")}, expect=403)
            status, _ = await by_token("PUT", f"{BASE}/pub", json=_bp_error_rule("pub"))
            assert status == 403
            assert comp.store.get("pub").version == 1

            # an admin's rule: a technician may disable it, not enable it again
            await admin.json("POST", BASE, _bp_error_rule("bp-admin"), expect=201)
            await tech.json("POST", f"{BASE}/bp-admin/disable")
            await tech.json("POST", f"{BASE}/bp-admin/enable", expect=403)
            status, _ = await by_token("POST", f"{BASE}/bp-admin/enable")
            assert status == 403
            assert comp.store.get("bp-admin").enabled is False
            assert comp.describe(comp.store.get("bp-admin"))["state"] == "disabled"

            # nor restore a version that reads above their class
            await admin.json("PUT", f"{BASE}/pub", _bp_error_rule("pub"))
            await admin.json("PUT", f"{BASE}/pub", PUBLIC_RULE)
            await tech.json("POST", f"{BASE}/pub/versions/2/restore", expect=403)
            assert comp.store.get("pub").version == 3
            await tech.json("POST", f"{BASE}/pub/versions/1/restore")

            # a pack with one such rule imports nothing
            pack = "rules:\n  - {id: p-ok, when: kiosk-1.in_use, then: [{alert: x}]}\n"
            pack += "  - {id: p-bp, when: [{event: blood_pressure}], then: [{alert: x}]}\n"
            status, body = await by_token(
                "POST",
                f"{BASE}/import",
                data=pack.encode(),
                headers={**headers, "Content-Type": "application/yaml"},
            )
            assert status == 403 and body["refused"] == ["rule p-bp: event:blood_pressure (sensitive)"], body
            assert comp.store.get("p-ok") is None and comp.store.get("p-bp") is None

            # an admin reads every class: the same rules are stored
            for doc in below_sensitive:
                await admin.json("POST", BASE, doc, expect=201)


async def test_what_a_firing_leaves_is_as_private_as_what_it_read(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession():
        events: list[Event] = []
        rt.hub.subscribe(lambda recs: events.extend(r for r in recs if isinstance(r, Event)))
        async with signed_in_roles(rt) as clients:
            viewer, tech, admin = clients["viewer"], clients["technician"], clients["admin"]
            await admin.json("POST", BASE, _bp_error_rule("bp-err"), expect=201)
            await admin.json("POST", BASE, BP_WRITE, expect=201)
            # a class only its records name: an error of this rule quotes a personal plate
            visit = {
                "id": "visit-err",
                "when": [{"event": "visit"}],
                "if": "int(payload.get('plate')) > 0",
                "then": [{"alert": "x"}],
            }
            await admin.json("POST", BASE, visit, expect=201)
            rt.hub.publish_event(Event("blood_pressure", "kiosk-1", payload=dict(BP), ts=time.time()))
            rt.hub.publish_event(
                Event("visit", "gate-1", payload={"plate": "沪A12345", "privacy": "personal"}, ts=time.time())
            )

            def left() -> dict[str, Event]:
                found = {}
                for e in events:
                    if e.kind == "rule_error" or e.kind == "rule_action_failed":
                        found[f"{e.kind}:{e.source}"] = e
                    elif e.kind == "command" and e.payload.get("by") == "rule:bp-write":
                        found["command"] = e
                return found if len(found) == 4 else {}

            found = await until(left, what="the error, failed action and command the firings left")
            assert set(found) == {
                "rule_error:bp-err",
                "rule_error:visit-err",
                "rule_action_failed:bp-write",
                "command",
            }
            for key, e in found.items():
                quoted = "沪A12345" if "visit" in key else MARK
                assert quoted in str(e.payload), e
                expected = Privacy.PERSONAL if "visit" in key else Privacy.SENSITIVE
                assert event_privacy(e.kind, e.payload, rt.hub.points) == expected, e

            # the views: the viewer's events and rules never quote them; an admin's do
            text = await (await viewer.request("GET", "/api/v1/events?limit=500")).text()
            assert MARK not in text and "沪A12345" not in text
            for rule_id in ("bp-err", "visit-err"):
                body = await viewer.json("GET", f"{BASE}/{rule_id}")
                assert body["error"] is None and body["redacted"] is True, body
            listed = {r["id"]: r for r in (await viewer.json("GET", BASE))["rules"]}
            assert listed["bp-err"]["error"] is None and listed["visit-err"]["error"] is None
            assert (await tech.json("GET", f"{BASE}/bp-err"))["error"] is None
            assert "沪A12345" in (await tech.json("GET", f"{BASE}/visit-err"))["error"]
            assert MARK in (await admin.json("GET", f"{BASE}/bp-err"))["error"]
