"""Rules are compiled off the event loop and bounded in size, and a dry run answers with at most
MAX_FIRINGS firings: a gateway keeps answering its other clients (here GET /healthz) while the
rules API compiles the largest rule it accepts, refuses a larger one naming the limit, and a dry
run of a rule that fires on every reading answers with the first firings, their total and
`truncated`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Reading
from rules.dry_run_worker import MAX_FIRINGS
from rules.model import MAX_ACTIONS, MAX_EXPRESSION_TEXT, MAX_TRIGGERS
from tests.rules.test_api import Client
from tests.support.site import running_site

PROBES = 3  # /healthz requests, one after the other, that must be answered during one compile


def _expr(chars: int) -> str:
    """A valid expression of about `chars` characters (below the per-expression limit)."""
    terms, out = 0, "value"
    while len(out) < chars - 20:
        out += f" + p('d{terms}.x') * {terms}"
        terms += 1
    return out


def _rule(rule_id: str, actions: int, expr_chars: int) -> dict[str, Any]:
    e = _expr(expr_chars)
    return {
        "id": rule_id,
        "when": "d.*",
        "if": "value > 0",
        "then": [{"set": {"point": f"d{i}.y", "expr": e}} for i in range(actions)],
    }


def _largest(rule_id: str) -> dict[str, Any]:
    """A rule at the limits: MAX_ACTIONS actions, its expressions just under MAX_EXPRESSION_TEXT."""
    rule = _rule(rule_id, MAX_ACTIONS, (MAX_EXPRESSION_TEXT - 20) // MAX_ACTIONS)
    size = len(rule["if"]) + sum(len(a["set"]["expr"]) for a in rule["then"])
    assert MAX_EXPRESSION_TEXT - 2000 < size <= MAX_EXPRESSION_TEXT
    return rule


async def _send(
    port: int, token: str, method: str, path: str, body: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a request and return once all of it is in the server's socket: every /healthz sent
    after this reaches the gateway after it."""
    data = json.dumps(body).encode()
    head = (
        f"{method} /api/v1/rules{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + data)
    await writer.drain()
    return reader, writer


async def _answered_during(
    probe: aiohttp.ClientSession, port: int, token: str, method: str, path: str, body: Any
) -> tuple[int, int, dict[str, Any]]:
    """(healthz answers that arrived before the request's answer, its status, its body)."""
    reader, writer = await _send(port, token, method, path, body)
    answer = asyncio.create_task(reader.read())  # Connection: close: the answer ends at EOF
    answered = 0
    for _ in range(PROBES):
        async with probe.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200
        if answer.done():
            break
        answered += 1
    raw = await answer
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return answered, int(head.split()[1]), json.loads(payload)


async def test_the_largest_rule_compiles_while_the_gateway_answers(tmp_path: Path) -> None:
    async with (
        running_site(tmp_path, {"devices": []}) as rt,
        aiohttp.ClientSession() as session,
        aiohttp.ClientSession() as probe,
    ):
        assert rt.state is not None
        token = create_token(rt.state, "tech", ["read", "rules"])
        tech = Client(session, rt.web_port, token)
        async with probe.get(f"http://127.0.0.1:{rt.web_port}/healthz") as resp:
            assert resp.status == 200  # the probe's connection is open before any compile

        port, big = rt.web_port, _largest("big")
        answered, status, body = await _answered_during(probe, port, token, "POST", "/validate", big)
        assert status == 200 and body["ok"] is True
        assert answered == PROBES, "the gateway did not answer /healthz while it validated the rule"

        answered, status, body = await _answered_during(probe, port, token, "POST", "", big)
        assert status == 201 and body["version"] == 1 and len(body["rule"]["then"]) == MAX_ACTIONS
        assert answered == PROBES, "the gateway did not answer /healthz while it created the rule"

        changed = {**big, "name": "changed"}
        answered, status, body = await _answered_during(probe, port, token, "PUT", "/big", changed)
        assert status == 200 and body["version"] == 2 and body["rule"]["name"] == "changed"
        assert answered == PROBES, "the gateway did not answer /healthz while it updated the rule"

        # the rule runs: the engine took what the thread compiled
        assert (await tech.call("GET", "/big"))[1]["state"] == "ok"
        assert rt.components["rules"].engine.rules["big"].rule.name == "changed"


async def test_a_rule_over_the_size_limits_is_refused_naming_the_limit(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))

        too_many = _rule("many", MAX_ACTIONS + 1, 20)
        for path in ("/validate", ""):
            status, body = await tech.call("POST", path, too_many)
            assert status == 422, body
            assert (
                f"at most {MAX_ACTIONS} actions" in body["detail"]
                and f"({MAX_ACTIONS + 1} given)" in body["detail"]
            )
            assert body["errors"][0]["field"] == "then"

        too_long = _rule("long", MAX_ACTIONS, MAX_EXPRESSION_TEXT // MAX_ACTIONS + 100)
        for path in ("/validate", ""):
            status, body = await tech.call("POST", path, too_long)
            assert status == 422, body
            assert f"at most {MAX_EXPRESSION_TEXT} characters" in body["detail"]

        triggers = {**_rule("when", 1, 20), "when": [f"d{i}.x" for i in range(MAX_TRIGGERS + 1)]}
        status, body = await tech.call("POST", "", triggers)
        assert status == 422 and f"at most {MAX_TRIGGERS} triggers" in body["detail"], body
        assert body["errors"][0]["field"] == "when"

        status, body = await tech.call("POST", "/dry-run", {"rule": too_many, "hours": 1})
        assert status == 422 and f"at most {MAX_ACTIONS} actions" in body["detail"]
        # nothing was stored
        assert (await tech.call("GET"))[1]["rules"] == []


async def test_a_dry_run_answers_with_the_first_firings_their_total_and_truncated(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        tech = Client(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        readings = MAX_FIRINGS + 500
        start = time.time() - 1800
        rt.journal.append([Reading(start + i, f"fast.p{i % 7}", 1 + i) for i in range(readings)])
        await rt.journal.flush()

        rule = {"id": "every", "when": ["fast.*"], "if": "value > 0", "notify": "always"}
        status, answer = await tech.call("POST", "/dry-run", {"rule": rule, "hours": 1})
        assert status == 200, answer
        assert answer["truncated"] is True and answer["firings_total"] == readings
        assert len(answer["firings"]) == MAX_FIRINGS
        # the first ones, in order
        assert [round(f["ts"] - start) for f in answer["firings"]] == list(range(MAX_FIRINGS))
        assert answer["evaluated"] == readings

        # a rule firing fewer times answers with all of them
        rule = {"id": "some", "when": ["fast.p1"], "if": "value > 0", "notify": "always"}
        status, answer = await tech.call("POST", "/dry-run", {"rule": rule, "hours": 1})
        assert status == 200, answer
        expected = len(range(1, readings, 7))
        assert answer["truncated"] is False and answer["firings_total"] == expected
        assert len(answer["firings"]) == expected
