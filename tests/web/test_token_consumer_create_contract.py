"""The OpenAPI document says what the pull side answers: `/api/v1/latest` answers 409 to a pull
token made before its consumer id was checked at creation, whose id names an upstream sink; a
dead letter whose receiver's answer is withheld from the caller carries `response_withheld`, a
documented field, and conforms to the `DeadLetter` schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema_rs
from aiohttp import web

from edge.api.tokens import create_token
from edge.model import Event
from tests.support.site import running_site
from tests.sync.helpers import answering_with, sink, wait_for
from tests.sync.test_dead_letter_response_class import SECRET, quoting_refusal, site
from tests.web.conftest import signed_in_roles, token_get


async def unavailable(request: web.Request) -> web.Response:
    return web.Response(status=503, text="maintenance")


def conforms(doc: dict[str, Any], ref: str, value: Any) -> None:
    """`value` is valid against `ref` (a local reference into `doc`)."""
    schema = {"$ref": ref, "components": doc["components"]}
    errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(value)]
    assert not errors, (ref, errors, value)


async def test_latest_documents_its_409_for_a_consumer_id_naming_a_sink(tmp_path: Path) -> None:
    async with answering_with(unavailable) as url, running_site(tmp_path, {"upstream": [sink(url)]}) as rt:
        base = f"http://127.0.0.1:{rt.web_port}"
        # made as a token was before the check at creation (the library call does not check)
        taker = create_token(rt.state, "old", ["pull"], consumer="central")
        status, problem = await token_get(base, "/api/v1/latest", taker)
        assert status == 409 and "the upstream sink 'central'" in problem["detail"], problem
        status, doc = await token_get(base, "/api/v1/openapi.json", create_token(rt.state, "r", ["read"]))
        assert status == 200
        answers = doc["paths"]["/api/v1/latest"]["get"]["responses"]
        assert "409" in answers, sorted(answers)
        conforms(doc, "#/components/schemas/Problem", problem)


async def test_a_withheld_dead_letter_is_documented_field_by_field(tmp_path: Path) -> None:
    async with answering_with(quoting_refusal) as url, running_site(tmp_path, site(url)) as rt:
        s = rt.components["sync"].sinks["central"]
        rt.hub.ingest([Event("blood_pressure", "kiosk-1", payload={SECRET: 187, "privacy": "sensitive"})])
        committed = await rt.journal.flush()
        await wait_for(lambda: s.cursor >= committed and s.dead_letters == 1, 20, "the sensitive dead letter")
        async with signed_in_roles(rt) as clients:
            doc = await clients["viewer"].json("GET", "/api/v1/openapi.json")
            documented = set(doc["components"]["schemas"]["DeadLetter"]["properties"])
            for role, client in clients.items():
                (letter,) = (await client.json("GET", "/api/v1/sync/dead-letters"))["dead_letters"]
                if role == "admin":
                    assert "response_withheld" not in letter and SECRET in letter["response"], letter
                else:
                    assert letter["response"] is None and letter["response_withheld"] == "sensitive"
                assert set(letter) <= documented, (role, sorted(set(letter) - documented))
                conforms(doc, "#/components/schemas/DeadLetter", letter)
