"""A resident's export (PIPL art. 45) holds the sinks' dead letters of records that name them: a
record a receiver refused is kept to its class's retention from when it was refused, so it may
outlive its journal record. A dead letter keeps the record as it was to be sent: to a sink with a
pseudonym key, the plate's pseudonym under that key; to a sink without one, no plate at all. On a
real sealed gateway with a real receiver that refuses a gate's plates: the journal's copies
expire, the dead letters stay, and both the admin API's and the command's export list the plate's
dead letter at the pseudonymising sink (opened), not another plate's nor the keyless sink's; after
a forget it is gone from the export too (its key is shredded)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.model import PRIVACY_RANK, PointInfo, PointType, Privacy, Reading
from edge.privacy.pseudonym import pseudonym
from edge.sync.component import SyncComponent
from tests.privacy.conftest import GATE_PLATE, OTHER_PLATE, http_sink
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async
from tests.sync.helpers import Receiver, wait_for
from tests.web.conftest import signed_in_roles

DAY = 86400.0
EXPORT = "/api/v1/privacy/subjects/export"
POINT = "gate-1.plate"

SITE = (
    """
site: {id: sealed-site}
privacy:
  master_key_file: MASTER
  retention: {personal: 90d}
upstream:"""
    + http_sink("central", "personal", "pseudonymise: {key_file: KEY}")
    + http_sink("city", "personal")
    + "\n"
)
KEY = b"central-pseudonym-key-0123456789abcdef"


def dead_letter_lines(lines: list[dict[str, Any]]) -> list[tuple[str, str, Any, str | None]]:
    return [(d["sink"], d["record"]["point"], d["record"]["value"], d["privacy"]) for d in lines]


@pytest.fixture
def rx() -> Iterator[Receiver]:
    """A receiver that refuses (400) every batch holding a plate; stopped by its PID."""
    r = Receiver("--poison", POINT)
    yield r
    r.stop()


async def test_a_residents_export_lists_the_dead_letters_that_name_them(
    tmp_path: Path, master: Path, rx: Receiver
) -> None:
    key = tmp_path / "central.pskey"
    key.write_bytes(KEY)
    key.chmod(0o600)
    doc = SITE.replace("MASTER", str(master)).replace("URL", rx.url).replace("KEY", str(key))
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, config.read_text(encoding="utf-8")) as rt:
        # the gate's plate point (no device polls it: its readings are only these two)
        rt.hub.register_points([PointInfo(POINT, "gate-1", "plate", PointType.STR, privacy=Privacy.PERSONAL)])
        old = time.time() - 60 * DAY  # within the 90 days' retention, past 30
        rt.hub.ingest([Reading(old, POINT, GATE_PLATE), Reading(old + 1, POINT, OTHER_PLATE)])
        committed = await rt.journal.flush()
        sync = rt.component(SyncComponent)
        assert sync is not None
        central, city = sync.sinks["central"], sync.sinks["city"]
        await wait_for(
            lambda: all(s.cursor >= committed and s.dead_letters >= 2 for s in (central, city)),
            20,
            "the plates dead-lettered at both sinks",
        )

        # the journal's copies reach their retention; the dead letters, refused just now, do not
        rt.journal.retention_s = {**rt.journal.retention_s, PRIVACY_RANK[Privacy.PERSONAL]: 30 * DAY}
        rt.journal.retention_interval = 0.01

        async def journal_copies_gone() -> bool:
            await rt.journal.flush()
            return not [r for r in rt.journal.read(0, 10_000) if r.get("value") in (GATE_PLATE, OTHER_PLATE)]

        await until_async(journal_copies_gone, what="the plates' journal records expiring")
        assert central.status()["dead_letters_expired"] == 0

        async with signed_in_roles(rt) as clients:
            resp = await clients["admin"].request("POST", EXPORT, json={"subject": GATE_PLATE})
            assert resp.status == 200, await resp.text()
            exported = [orjson.loads(line) for line in (await resp.text()).splitlines()]
        assert [d["type"] for d in exported] == ["dead_letter"]
        assert dead_letter_lines(exported) == [("central", POINT, pseudonym(KEY, GATE_PLATE), "personal")]
        assert exported[0]["status"] == 400 and exported[0]["dead_lettered"] > old + DAY
        assert resp.headers["X-Records"] == "1"

    out = tmp_path / "plate.jsonl"
    done = edge_cli("privacy", "export", "-c", str(config), "--subject", GATE_PLATE, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "0 records, 1 dead letter and 0 sealed snapshots" in done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert dead_letter_lines(lines) == [("central", POINT, pseudonym(KEY, GATE_PLATE), "personal")]

    other = edge_cli("privacy", "export", "-c", str(config), "--subject", OTHER_PLATE)
    assert other.returncode == 0, other.stderr
    assert dead_letter_lines([json.loads(line) for line in other.stdout.splitlines()]) == [
        ("central", POINT, pseudonym(KEY, OTHER_PLATE), "personal")
    ]

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", GATE_PLATE)
    assert done.returncode == 0, done.stderr
    again = edge_cli("privacy", "export", "-c", str(config), "--subject", GATE_PLATE)
    assert again.returncode == 0 and again.stdout == "", again.stderr  # its dead letter no longer opens
    other = edge_cli("privacy", "export", "-c", str(config), "--subject", OTHER_PLATE)
    assert pseudonym(KEY, OTHER_PLATE) in other.stdout
