"""Snapshot files: content-addressed, written atomically, capped per camera.

Layout: `<blob_dir>/<camera id>/<sha256>.jpg`. The blob id is the sha256 of the bytes (64
lowercase hex digits), so an id names exactly one content and a request can be validated
without touching the file system; ids are matched by pattern, never joined into a path raw.
A file appears under its final name only complete (temp file, fsync, rename). A snapshot's age is
its file's modification time (set when it was stored, or stored again). Snapshots show
people and plates: files are created 0600 and camera folders 0700 whatever the umask. No OpenCV here:
the web server serves blobs on sites without cameras too.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

BLOB_ID_RE = re.compile(r"^[0-9a-f]{64}$")
SUFFIX = ".jpg"


def valid_blob_id(blob_id: str) -> bool:
    return bool(BLOB_ID_RE.fullmatch(blob_id))


@dataclass(frozen=True, slots=True)
class Blob:
    id: str
    path: Path
    bytes: int
    sha256: str


class BlobStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def put(self, camera: str, data: bytes) -> Blob:
        digest = hashlib.sha256(data).hexdigest()
        folder = self.root / camera
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)  # mkdir's mode is filtered by the umask
        final = folder / f"{digest}{SUFFIX}"
        if final.exists():  # the same picture again: it becomes the newest, once
            os.utime(final)
            return Blob(digest, final, len(data), digest)
        tmp = folder / f".{digest}.{os.getpid()}.tmp"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a power cut
        finally:
            os.close(fd)
        return Blob(digest, final, len(data), digest)

    def _entries(self, folder: Path) -> list[tuple[int, str, int]]:
        """(mtime in ns, file name, size) of the blobs in one camera's folder, oldest first."""
        entries = []
        try:
            with os.scandir(folder) as it:
                for e in it:
                    if e.is_file() and e.name.endswith(SUFFIX) and valid_blob_id(e.name[: -len(SUFFIX)]):
                        st = e.stat()
                        entries.append((st.st_mtime_ns, e.name, st.st_size))
        except FileNotFoundError:
            return []
        entries.sort()
        return entries

    def _folders(self) -> list[Path]:
        """Every camera's folder."""
        try:
            with os.scandir(self.root) as it:
                return [Path(e.path) for e in it if e.is_dir()]
        except FileNotFoundError:
            return []

    @staticmethod
    def _delete(folder: Path, name: str, size: int) -> Blob | None:
        """Remove one blob file; None when it was already gone."""
        path = folder / name
        try:
            path.unlink()
        except FileNotFoundError:
            return None
        blob_id = name[: -len(SUFFIX)]
        return Blob(blob_id, path, size, blob_id)

    def expire(self, cutoff_ts: float) -> list[Blob]:
        """Delete every camera's blobs stored before `cutoff_ts` (epoch seconds): the retention of
        their privacy class, beside the count and size caps of `prune`."""
        cutoff_ns = int(cutoff_ts * 1e9)
        deleted: list[Blob] = []
        for folder in self._folders():
            for mtime_ns, name, size in self._entries(folder):
                if mtime_ns >= cutoff_ns:
                    break
                blob = self._delete(folder, name, size)
                if blob is not None:
                    deleted.append(blob)
        return deleted

    def prune(self, camera: str, keep: int, max_bytes: int) -> list[Blob]:
        """Delete this camera's oldest blobs until at most `keep` and `max_bytes` remain."""
        folder = self.root / camera
        entries = self._entries(folder)
        total = sum(size for _, _, size in entries)
        deleted: list[Blob] = []
        for _, name, size in entries:
            if len(entries) - len(deleted) <= keep and total <= max_bytes:
                break
            blob = self._delete(folder, name, size)
            if blob is not None:
                total -= size
                deleted.append(blob)
        return deleted

    def find(self, blob_id: str) -> Path | None:
        """The file of a blob of any camera, or None. `blob_id` must be valid (checked again)."""
        if not valid_blob_id(blob_id):
            return None
        for folder in self._folders():
            path = folder / f"{blob_id}{SUFFIX}"
            if path.is_file():
                return path
        return None
