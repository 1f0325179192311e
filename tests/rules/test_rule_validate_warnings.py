"""A rule that names what the site does not have is valid but said to be so: validating or saving
it on a running gateway answers `warnings` (located as errors are) for a trigger pattern that
matches no point, a p() of no point and a write to a point that is not writable; a p() of no point
fails at run time naming the point; and an unquoted duration is hinted to be quoted. Before, the
editor said "The rule is valid." and the rule stayed ok and silent, or failed with a TypeError
about None, or failed each write."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Reading
from tests.support.site import running_site
from tests.support.waiting import until

SITE = """\
site: {id: validate-warnings}
devices:
  - id: meter-b1
    driver: sim
    points:
      - {name: voltage, signal: constant, value: 230, interval: 1h}
  - id: gate-1
    driver: sim
    points:
      - {name: barrier_open, type: bool, signal: constant, value: false, writable: true}
"""
BASE = "/api/v1/rules"
NO_TRIGGER = {"id": "r1", "when": "meter-b9.voltage", "if": "value > 100", "then": [{"alert": "x"}]}
MISSPELT = {
    "id": "r2",
    "when": "meter-b1.voltage",
    "if": "p('meter-b1.voltag') > 100",
    "then": [{"alert": "x"}],
}
READ_ONLY = {
    "id": "r3",
    "when": "meter-b1.voltage",
    "if": "value > 100",
    "notify": "once",
    "then": [{"write": {"point": "meter-b1.voltage", "value": 1}}],
}
FINE = {
    "id": "r4",
    "when": "meter-b1.*",
    "if": "p('meter-b1.voltage') > 100",
    "notify": "once",
    "then": [{"write": {"point": "gate-1.barrier_open", "value": True}}],
}


async def test_validate_and_save_warn_of_points_the_site_does_not_have(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        headers = {"Authorization": f"Bearer {create_token(rt.state, 'integrator', ['read', 'rules'])}"}
        base = f"http://127.0.0.1:{rt.web_port}{BASE}"

        async def post(path: str, doc: dict[str, Any]) -> tuple[int, Any]:
            async with session.post(base + path, json=doc, headers=headers) as resp:
                return resp.status, await resp.json()

        expected = {
            "r1": (
                "when[0].point",
                "no point of this site matches meter-b9.voltage",
                "warn_no_point_matches",
            ),
            "r2": ("if", "meter-b1.voltag is no point of this site", "warn_unknown_point"),
            "r3": ("then[0].write.point", "meter-b1.voltage is not writable", "warn_not_writable"),
        }
        for doc in (NO_TRIGGER, MISSPELT, READ_ONLY):
            field, said, key = expected[str(doc["id"])]
            for path, status in (("/validate", 200), ("", 201)):
                code, body = await post(path, doc)
                assert code == status, body
                (warning,) = body["warnings"]
                assert warning["field"] == field and said in warning["message"], warning
                assert warning["rule"] == doc["id"]
                # the UI words it in the reader's language from its key, as it words errors
                assert warning["message_key"] == f"msg.rule.{key}" and warning["args"], warning
        code, body = await post("/validate", FINE)
        assert (code, body) == (200, {"ok": True})
        code, body = await post("", FINE)
        assert code == 201 and "warnings" not in body, body
        # a disabled rule does nothing on the site: nothing to warn of
        code, body = await post("/validate", {**NO_TRIGGER, "enabled": False})
        assert (code, body) == (200, {"ok": True})


async def test_a_p_of_no_point_fails_naming_the_point(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        rules = rt.components["rules"]
        rules.put(MISSPELT, "test", "create")
        rt.hub.ingest([Reading(time.time(), "meter-b1.voltage", 231.0)])

        error = await until(lambda: rules.engine.rules["r2"].error, what="the rule's error")
        assert "meter-b1.voltag" in error and "NoneType" not in error, error


async def test_an_unquoted_duration_is_hinted_to_be_quoted(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        headers = {"Authorization": f"Bearer {create_token(rt.state, 'integrator', ['read', 'rules'])}"}
        doc = {"id": "r5", "when": "meter-b1.voltage", "if": "avg(point, 5m) > 230", "then": [{"alert": "x"}]}
        url = f"http://127.0.0.1:{rt.web_port}{BASE}/validate"
        async with session.post(url, json=doc, headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 422, body
        (error,) = body["errors"]
        assert error["field"] == "if" and "'5m'" in error["message"], error
