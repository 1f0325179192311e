"""A camera whose blob dir is full: a snapshot that cannot be written leaves no part of the picture
behind (a cut-short temp file held a clear JPEG fragment outside every retention), periodic
snapshots that fail are counted and journaled as `snapshot_failed` (they failed with a stray
task traceback only), and a partial file left by a write that was killed is swept once stale.
The blob dir is a real 3 MiB tmpfs, the camera decodes a real video."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from edge.store.blobs import PARTIAL_STALE_S, BlobStore
from tests.camera.helpers import Collector, write_video
from tests.camera.test_snapshots import moving_dots, site
from tests.store.test_disk_full import small_disk
from tests.support.site import running_site
from tests.support.waiting import until

__all__ = ["small_disk"]  # the fixture (mounts an 8 MiB tmpfs; needs root)


def fill(path: Path) -> None:
    """Write zeros to `path` until the filesystem has no room left."""
    with contextlib.suppress(OSError), open(path, "wb") as f:
        while True:
            f.write(bytes(64 * 1024))
            f.flush()


async def test_a_full_blob_dir_leaves_no_partial_picture_and_says_so(
    tmp_path: Path, small_disk: Path
) -> None:
    video = write_video(tmp_path / "cam.avi", moving_dots, 150, fps=15)
    doc = site(video, snapshots={"every": "200ms"})
    doc["storage"] = {"blob_dir": str(small_disk / "blobs")}
    async with running_site(tmp_path, doc, web=False) as rt:
        seen = Collector(rt)
        await until(lambda: seen.kind("snapshot"), timeout=15, what="a first periodic snapshot")
        fill(small_disk / "filler")
        failed = await until(lambda: seen.kind("snapshot_failed"), timeout=15, what="a snapshot_failed event")
        assert "No space left on device" in failed[0].payload["error"]
        assert failed[0].payload["reason"] == "periodic" and failed[0].payload["failed"] >= 1
        cam = small_disk / "blobs" / "cam"
        assert not list(cam.glob(".*.tmp")), "a cut-short write left a partial picture"
        assert rt.driver("cam").snapshots_failed >= 1  # type: ignore[union-attr]
    os.unlink(small_disk / "filler")

    # a write killed mid-way leaves its temp file: swept once stale, by the camera's own pruning
    partial = cam / f".{'a' * 64}.{os.getpid()}.tmp"
    partial.write_bytes(b"\xff\xd8\xff\xe0 a cut-short picture")
    fresh = cam / f".{'b' * 64}.{os.getpid()}.tmp"
    fresh.write_bytes(b"a write in progress")
    old = time.time() - PARTIAL_STALE_S - 1
    os.utime(partial, (old, old))
    BlobStore(str(small_disk / "blobs")).prune("cam", 1000, 10**9)
    assert not partial.exists() and fresh.exists()
