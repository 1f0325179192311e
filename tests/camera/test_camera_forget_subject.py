"""A kiosk camera (sensitive, `subject_from: kiosk-1`) stops filing pictures under a resident once
`edge privacy forget` forgot them on the running gateway: no snapshot after the forget names the
resident and no fresh data key is made for them, whether the snapshot comes before the
`subject_erased` notice (the key is found gone) or after it; a measurement of the resident
journaled before the erasure names nobody; a new measurement after it names them again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from edge.model import Event
from edge.privacy.atrest import Sealer
from tests.camera.helpers import Collector
from tests.camera.test_snapshot_subject import camera_online, command_snapshot, new_kiosk_site
from tests.privacy.conftest import RESIDENT
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until


def measurement(ts: float | None = None) -> Event:
    payload = {"resident": RESIDENT, "systolic_mmhg": 131, "privacy": "sensitive"}
    return Event("blood_pressure", "kiosk-1", payload=payload, ts=time.time() if ts is None else ts)


async def test_a_forgotten_resident_is_not_the_subject_of_the_kiosk_cameras_next_snapshots(
    tmp_path: Path,
) -> None:
    doc = new_kiosk_site(tmp_path)
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, doc, web=False) as rt:
        seen = Collector(rt)
        await camera_online(rt)
        measured_at = time.time()
        rt.hub.publish_event(measurement(measured_at))
        before = await command_snapshot(rt, seen)
        assert before["subject"] == RESIDENT

        done = await asyncio.to_thread(
            edge_cli, "privacy", "forget", "-c", str(config), "--subject", RESIDENT
        )
        assert done.returncode == 0, done.stderr
        # at once, before the gateway journals the notice: the resident's key is gone
        at_once = await command_snapshot(rt, seen)
        notices = await until(lambda: seen.kind("subject_erased"), timeout=15, what="the erasure notice")
        after_notice = await command_snapshot(rt, seen)
        rt.hub.publish_event(measurement(measured_at - 1))  # journaled late, measured before
        late = await command_snapshot(rt, seen)
        rt.hub.publish_event(measurement(notices[0].ts + 1))  # measured again after the forget
        again = await command_snapshot(rt, seen)

    for name, payload in (("at once", at_once), ("after the notice", after_notice), ("late", late)):
        assert "subject" not in payload and "subject_from" not in payload, (name, payload)
        assert payload["sealed"] is True
    assert again["subject"] == RESIDENT and again["subject_from"] == "kiosk-1"
    sealer = Sealer.open(tmp_path / "edge.db", str(tmp_path / "master.key"))
    try:
        kid: Any = sealer.keys.kid_of(RESIDENT)
        assert kid is not None and kid not in sealer.keys.forgotten_kids()  # made for `again` alone
    finally:
        sealer.close()
