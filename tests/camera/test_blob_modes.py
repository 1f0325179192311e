"""Snapshot files are private whatever the umask of the program that embeds the runtime."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edge.store.blobs import BlobStore


def test_snapshots_are_0600_in_0700_folders_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        blob = BlobStore(tmp_path / "blobs").put("cam-gate", b"\xff\xd8 a jpeg \xff\xd9")
    finally:
        os.umask(old)
    assert stat.S_IMODE(blob.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(blob.path.parent.stat().st_mode) == 0o700
