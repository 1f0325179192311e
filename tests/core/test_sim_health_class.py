"""A simulated health measurement takes its kind's class (sensitive) unless the site names another:
the generator writes no `privacy` of its own into the payload."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.model import PRIVACY_RANK, Privacy
from edge.privacy.keyfile import create_master_key
from tests.support.site import running_site
from tests.support.waiting import until_async

SITE = """
privacy: {master_key_file: MASTER}
devices:
  - id: kiosk-1
    driver: sim
    points:
      - {name: in_use, type: bool, signal: constant, value: false, interval: 1h}
    events:
      - {kind: blood_pressure, every: 20ms, generator: blood_pressure}
      - {kind: weight, every: 20ms, generator: weight}
  - id: gate-1
    driver: sim
    points:
      - {name: loop_occupied, type: bool, signal: constant, value: false, interval: 1h}
    events:
      - {kind: vehicle_passage, every: 20ms, generator: vehicle, privacy: personal}
"""
KINDS = ("blood_pressure", "weight", "vehicle_passage")


def stored(path: Path) -> list[tuple[str, int, object]]:
    """(kind, class rank, payload as stored) of every generated event in the journal file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(
            f"SELECT kind, privacy, payload FROM journal WHERE kind IN ({','.join('?' * len(KINDS))})",
            KINDS,
        ).fetchall()
    finally:
        conn.close()


async def test_a_simulated_measurement_is_sensitive_by_kind_and_a_site_set_class_still_applies(
    tmp_path: Path,
) -> None:
    master = tmp_path / "master.key"
    create_master_key(master)
    async with running_site(tmp_path, SITE.replace("MASTER", str(master)), web=False) as rt:

        async def each_kind_journaled() -> bool:
            await rt.journal.flush()
            return {r.get("kind") for r in rt.journal.tail(200)} >= set(KINDS)

        await until_async(each_kind_journaled, what="a blood pressure, a weight and a passage journaled")
        opened = [r for r in rt.journal.tail(200) if r.get("kind") in KINDS]

    # as the gateway reads them: no class of the generator's own in the payload
    assert all("privacy" not in r["payload"] for r in opened if r["kind"] != "vehicle_passage")
    assert all(r["payload"]["privacy"] == "personal" for r in opened if r["kind"] == "vehicle_passage")
    rows = stored(tmp_path / "edge.db")
    ranks = {kind: {rank for k, rank, _ in rows if k == kind} for kind in KINDS}
    assert ranks == {
        "blood_pressure": {PRIVACY_RANK[Privacy.SENSITIVE]},
        "weight": {PRIVACY_RANK[Privacy.SENSITIVE]},
        "vehicle_passage": {PRIVACY_RANK[Privacy.PERSONAL]},
    }
    # sealed at rest: no measurement's payload is readable JSON in the file
    for _, _, payload in rows:
        assert isinstance(payload, bytes)
        assert not payload.startswith(b"{")
        assert b"resident" not in payload and b"plate" not in payload
