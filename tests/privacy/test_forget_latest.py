"""A plate forgotten while the gateway runs stops being served from memory: the latest value of
every private point that names it (a quiet gate's `last_plate`, read once an hour) reads as
erased in the devices API and `/api/v1/latest` as soon as the running gateway takes the erasure
notice, as its history does; another point's value is kept."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.privacy.conftest import GATE_PLATE, OTHER_PLATE, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async
from tests.web.conftest import signed_in_roles

QUIET_GATES = f"""
  - id: gate-1
    driver: sim
    points:
      - {{name: last_plate, type: str, signal: constant, value: "{GATE_PLATE}", interval: 1h, privacy: personal}}
  - id: gate-2
    driver: sim
    points:
      - {{name: last_plate, type: str, signal: constant, value: "{OTHER_PLATE}", interval: 1h, privacy: personal}}
"""


def plate_of(latest: dict[str, Any], point: str) -> dict[str, Any]:
    return next(p for p in latest["latest"] if p["point"] == point)


async def test_a_forgotten_plate_is_no_longer_served_as_a_latest_value(tmp_path: Path, master: Path) -> None:
    config = site_file(tmp_path, site_doc(master) + QUIET_GATES)
    async with (
        running_site(tmp_path, config.read_text(encoding="utf-8")) as rt,
        signed_in_roles(rt) as clients,
    ):
        admin = clients["admin"]

        async def read() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            latest = await admin.json("GET", "/api/v1/latest")
            points = await admin.json("GET", "/api/v1/devices/gate-1/points")
            point = next(p for p in points["points"] if p["id"] == "gate-1.last_plate")
            return plate_of(latest, "gate-1.last_plate"), point, plate_of(latest, "gate-2.last_plate")

        async def both_read() -> bool:
            return all(r.get("value") is not None for r in await read())

        await until_async(both_read, what="both gates' first plate")
        latest, point, other = await read()
        assert latest["value"] == point["value"] == GATE_PLATE and other["value"] == OTHER_PLATE

        done = await asyncio.to_thread(
            edge_cli, "privacy", "forget", "-c", str(config), "--subject", GATE_PLATE
        )
        assert done.returncode == 0, done.stderr

        async def noticed() -> bool:
            await rt.journal.flush()
            return any(r.get("kind") == "subject_erased" for r in rt.journal.tail(20))

        await until_async(noticed, what="the subject_erased notice journaled by the running gateway")
        latest, point, other = await read()
        # as the history shows a reading whose subject was forgotten: a null value, its time and
        # quality kept
        assert latest["value"] is None and latest["quality"] == "good" and latest["ts"] is not None
        assert point["value"] is None and point["quality"] == "good"
        assert other["value"] == OTHER_PLATE  # another subject's plate is kept
        history = await admin.json("GET", "/api/v1/history?point=gate-1.last_plate")
        assert [r[1] if isinstance(r, list) else r.get("value") for r in history["readings"]][-1] is None
        assert rt.components["privacy"].status()["latest_erased"] == 1
        assert GATE_PLATE not in str(rt.hub.latest) and GATE_PLATE not in str(rt.restored_good)
