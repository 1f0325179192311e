"""Refusals the UI shows carry a message key and args (the English `detail` stays for API
clients): account and token requests, the privacy routes without encryption at rest, a dead
letter's retry to a receiver that cannot be reached (not "rejected": nothing answered), and a
rule's id and shape."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from edge.sync import deadletters
from tests.support.site import running_site
from tests.web.conftest import signed_in_admin


async def _problem(c: Any, method: str, path: str, body: Any, status: int) -> dict[str, Any]:
    resp = await c.request(method, path, json=body)
    assert resp.status == status, await resp.text()
    return dict(await resp.json(content_type=None))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_refusals_carry_their_message_key(tmp_path: Path) -> None:
    sink = {"id": "central", "type": "http", "url": f"http://127.0.0.1:{_closed_port()}/in"}
    async with running_site(tmp_path, {"upstream": [sink]}) as rt, signed_in_admin(rt) as c:
        p = await _problem(
            c, "POST", "/api/v1/users", {"name": "a b", "role": "viewer", "password": "x" * 12}, 422
        )
        assert p["message_key"] == "msg.account.bad_name" and p["detail"].startswith("user name: ")
        p = await _problem(
            c, "POST", "/api/v1/users", {"name": "ann", "role": "boss", "password": "x" * 12}, 422
        )
        assert p["message_key"] == "msg.account.bad_role" and p["args"]["role"] == "boss"
        p = await _problem(
            c, "POST", "/api/v1/users", {"name": "ann", "role": "viewer", "password": "short"}, 422
        )
        assert p["message_key"] == "msg.account.password_short" and p["args"]["min"] == "10"

        p = await _problem(c, "POST", "/api/v1/tokens", {"name": "bms", "scopes": []}, 422)
        assert p["message_key"] == "msg.token.bad_scopes" and "read" in p["args"]["accepted"]
        p = await _problem(c, "POST", "/api/v1/tokens", {"name": "bms", "scopes": ["pull"]}, 422)
        assert p["message_key"] == "msg.token.pull_needs_consumer"

        p = await _problem(c, "POST", "/api/v1/privacy/subjects/forget", {"subject": "r-1"}, 409)
        assert p["message_key"] == "msg.privacy.encryption_off" and "master_key_file" in p["detail"]

        record = {
            "type": "reading",
            "seq": 1,
            "ts": time.time(),
            "point": "dev.x",
            "value": 1.0,
            "quality": "good",
        }
        deadletters.add(rt.state, "central", 1, record, 400, "refused", privacy=0)
        p = await _problem(c, "POST", "/api/v1/sync/dead-letters/1/retry", {}, 502)
        assert p["title"] == "Receiver not reachable" and p["message_key"] == "msg.sync.unreachable"
        assert p["args"]["sink"] == "central"

        p = await _problem(
            c, "POST", "/api/v1/rules/validate", {"id": "Bad Id", "when": "d.x", "then": []}, 422
        )
        assert p["errors"][0]["message_key"] == "msg.rule.bad_id" and p["errors"][0]["args"] == {
            "id": "Bad Id"
        }
        p = await _problem(
            c, "POST", "/api/v1/rules/validate", {"id": "r1", "when": "d.x", "notify": "repeat"}, 422
        )
        assert p["errors"][0]["message_key"] == "msg.rule.repeat_needs_every"
