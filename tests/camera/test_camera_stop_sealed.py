"""A camera stopped while a snapshot is being stored, on a site with a master key: the stop waits
for that snapshot, and whether it is sealed was decided when the camera started. A worker thread
that finds the site's key gone (the privacy component stopped) fails the snapshot, counted as
`snapshot_failed`, and never writes the picture in clear."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import drivers.camera.driver as camera_driver
from edge.privacy.keyfile import create_master_key
from edge.store.rows import unregister
from tests.camera.helpers import write_video
from tests.camera.test_personal_sealed import gate_site
from tests.camera.test_snapshots import moving_dots
from tests.support.site import running_site
from tests.support.waiting import until


async def test_a_snapshot_running_at_stop_is_waited_for_and_never_written_in_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = tmp_path / "master.key"
    create_master_key(master)
    video = write_video(tmp_path / "gate.avi", moving_dots, 150, fps=15)
    doc = gate_site(video, master)
    del doc["consumers"]
    blobs = tmp_path / "blobs"

    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    redact = camera_driver.redact

    def held_redact(*args: Any, **kw: Any) -> Any:
        """The snapshot's worker thread, held after it started until the test lets it go."""
        entered.set()
        release.wait(30)
        return redact(*args, **kw)

    async with running_site(tmp_path, doc, web=False) as rt:
        await until(lambda: rt.slots["cam"].health.state == "online", timeout=15, what="camera online")
        driver = rt.slots["cam"].driver
        store = driver._store_snapshot

        def store_snapshot(*args: Any, **kw: Any) -> Any:
            try:
                return store(*args, **kw)
            finally:
                finished.set()

        monkeypatch.setattr(driver, "_store_snapshot", store_snapshot)
        monkeypatch.setattr(camera_driver, "redact", held_redact)
        driver._spawn_snapshot("periodic")
        await until(entered.is_set, timeout=10, what="the snapshot's worker thread")

        stopping = asyncio.create_task(rt.stop_device("cam"))
        await until(lambda: "cam" not in rt.slots, timeout=10, what="the camera's stop begun")
        # what the privacy component's stop does after the drivers': the site's key goes away
        privacy = rt.components["privacy"]
        unregister(rt.site.storage.resolved_blob_dir(), privacy.sealer)
        release.set()
        await asyncio.wait_for(stopping, timeout=20)
        assert finished.is_set()  # the stop returned once the snapshot had ended, not before

    on_disk = [p.name for p in blobs.rglob("*") if p.is_file()]
    assert not [n for n in on_disk if n.endswith(".jpg")], on_disk
    assert driver.snapshots_failed == 1 and driver.snapshots_taken == 0
