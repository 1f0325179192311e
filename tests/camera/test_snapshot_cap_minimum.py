"""`snapshots.max_bytes` below the minimum (smaller than a few snapshots) is refused at its line of
the site file; a snapshot bigger than the whole cap is kept (the older ones go), so the id its
command answered can be fetched."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge.model import CommandStatus
from edge.store.blobs import BlobStore
from tests.camera.helpers import Collector, write_video
from tests.camera.test_snapshots import site
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until


def test_a_cap_below_the_minimum_is_refused_at_its_line(tmp_path: Path) -> None:
    doc = site(tmp_path / "never-opened.avi", snapshots={"max_bytes": "10KiB"})
    config = site_file(tmp_path, doc)
    done = edge_cli("check", "-c", str(config))
    assert done.returncode == 1, done.stdout
    out = done.stdout + done.stderr
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if "max_bytes" in text)
    assert f"{config}:{line}: devices[0].snapshots.max_bytes: " in out, out
    assert "must be at least 2 MiB (got 10240 bytes)" in out, out


def noise(i: int) -> np.ndarray[Any, Any]:
    """A 1920x1080 frame of noise: its JPEG is bigger than 2 MiB."""
    return np.random.default_rng(i).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)


async def test_the_snapshot_just_taken_is_never_pruned_even_over_the_cap(tmp_path: Path) -> None:
    video = write_video(tmp_path / "noise.avi", noise, 4, fps=5)
    doc = site(video, redact=False, snapshots={"max_bytes": "2MiB", "quality": 100})
    async with running_site(tmp_path, doc, web=False) as rt:
        seen = Collector(rt)
        await until(lambda: rt.slots["cam"].health.state == "online", timeout=15, what="camera online")
        source = rt.slots["cam"].driver.source
        taken: list[str] = []

        def newer_than(seq: int) -> bool:
            return bool(source.latest().seq > seq)

        for _ in range(2):
            await until(partial(newer_than, source.latest().seq), timeout=10, what="a new frame")
            result = await rt.hub.write("cam.snapshot", True, source="test")
            assert result.status == CommandStatus.OK, result.reason
            taken.append(result.reason.removeprefix("blob "))
        await until(lambda: len(seen.kind("snapshot")) >= 2, timeout=10, what="two snapshots")
        events = seen.kind("snapshot")
    assert all(e.payload["bytes"] > 2 * 1024**2 for e in events)  # each over the cap alone
    store = BlobStore(rt.site.storage.resolved_blob_dir())
    assert store.find(taken[-1]) is not None  # the newest is there to be fetched
    pruned = [b for e in seen.kind("blobs_pruned") for b in e.payload["blobs"]]
    assert taken[-1] not in pruned
    assert taken[0] != taken[-1] and pruned == [taken[0]]  # the older one went, counted
    assert store.find(taken[0]) is None


def test_prune_spares_the_file_named(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    old = store.put("cam", b"\xff\xd8\xff" + bytes(5000))
    new = store.put("cam", b"\xff\xd8\xff" + bytes(6000))
    deleted = store.prune("cam", keep=10, max_bytes=1000, spare=new.path)
    assert [b.id for b in deleted] == [old.id]
    assert new.path.exists() and not old.path.exists()
