"""A dead-lettered rule alert about a gate's plate point names the plate by its value, as the
journal's copy of the alert does: a resident's export lists it (the admin API and `edge privacy
export`), and after `edge privacy forget` it is gone with the plate's key. The dead letter is kept
as the pseudonymising sink was to send it (the plate's pseudonym in its value) and sealed, on a
real gateway with a master key, the way a sink stores a refused record."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson

from edge.privacy.pseudonym import pseudonym
from edge.sync import deadletters
from tests.privacy.conftest import GATE_PLATE, OTHER_PLATE, sealed_site_text
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.web.conftest import signed_in_roles

EXPORT = "/api/v1/privacy/subjects/export"
POINT = "gate-1.last_plate"
KEY = b"central-pseudonym-key-0123456789abcdef"

GATE = """
  - id: gate-1
    driver: sim
    points:
      - {name: last_plate, type: str, signal: constant, value: OTHER_PLATE, interval: 1h, privacy: personal}
"""
UPSTREAM = """upstream:
  - id: central
    type: http
    enabled: false
    url: http://127.0.0.1:9/ingest
    max_privacy: personal
    pseudonymise: {key_file: KEY}
"""
SITE = sealed_site_text("dead-letter-site", GATE) + UPSTREAM


def alert(seq: int, value: Any) -> dict[str, Any]:
    """A rule's alert on the plate point, in the pull-API shape, carrying `value`."""
    return {
        "seq": seq,
        "ts": time.time(),
        "type": "event",
        "kind": "alert",
        "source": "plate-watch",
        "severity": "warning",
        "payload": {
            "point": POINT,
            "value": value,
            "message": "a plate on the watch list",
            "privacy": "personal",
        },
    }


def dead_letters(lines: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(d["sink"], d["record"]["payload"]["value"]) for d in lines if d["type"] == "dead_letter"]


async def test_a_dead_lettered_alert_on_a_plate_point_is_exported_and_forgotten_with_the_plate(
    tmp_path: Path, master: Path
) -> None:
    key = tmp_path / "central.pskey"
    key.write_bytes(KEY)
    key.chmod(0o600)
    doc = SITE.replace("MASTER", str(master)).replace("KEY", str(key)).replace("OTHER_PLATE", OTHER_PLATE)
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, config.read_text(encoding="utf-8")) as rt:
        assert rt.state is not None
        deadletters.ensure(rt.state)
        for seq, plate in ((7, GATE_PLATE), (8, OTHER_PLATE)):
            # as the sink sent it (its pseudonym of the plate), sealed under the plate of the
            # journal's record (`about`), as a refused record is stored
            sent = alert(seq, pseudonym(KEY, plate))
            deadletters.add(rt.state, "central", seq, sent, 400, "refused", 1, alert(seq, plate))
        async with signed_in_roles(rt) as clients:
            resp = await clients["admin"].request("POST", EXPORT, json={"subject": GATE_PLATE})
            assert resp.status == 200, await resp.text()
            exported = [orjson.loads(line) for line in (await resp.text()).splitlines()]
        assert dead_letters(exported) == [("central", pseudonym(KEY, GATE_PLATE))]

    done = edge_cli("privacy", "export", "-c", str(config), "--subject", GATE_PLATE)
    assert done.returncode == 0, done.stderr
    assert "1 dead letter" in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert dead_letters(lines) == [("central", pseudonym(KEY, GATE_PLATE))]

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", GATE_PLATE)
    assert done.returncode == 0, done.stderr
    again = edge_cli("privacy", "export", "-c", str(config), "--subject", GATE_PLATE)
    assert again.returncode == 0, again.stderr
    assert dead_letters([json.loads(line) for line in again.stdout.splitlines()]) == []
    other = edge_cli("privacy", "export", "-c", str(config), "--subject", OTHER_PLATE)
    assert dead_letters([json.loads(line) for line in other.stdout.splitlines()]) == [
        ("central", pseudonym(KEY, OTHER_PLATE))
    ]
