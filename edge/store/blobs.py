"""Snapshot files: content-addressed, written atomically, capped per camera.

Layout: `<blob_dir>/<camera id>/<blob id>.jpg` (sealed: `.sealed`, `.psealed`, below). A blob id
is 64 lowercase hex digits: the sha256 of the image, so an id names exactly one content and a
request can be validated without touching the file system; ids are matched by pattern, never
joined into a path raw. A sealed file holds one picture under one key: the same picture sealed
under another subject's key (two plates caught in one frame, a periodic snapshot under the
camera's key) is a copy of its own, whose id is the sha256 of that key's tag and the image
(`_sealed_id`), so forgetting one subject removes its copy and no other.
A file appears under its final name only complete (temp file, fsync, rename). A snapshot's age is
its file's modification time (set when it was stored, or stored again). Snapshots show
people and plates: files are created 0600 and camera folders 0700 whatever the umask. No OpenCV here:
the web server serves blobs on sites without cameras too.

A sealed snapshot holds `SEALED_MAGIC` and an envelope of `edge.privacy.keys` (version, key
reference, nonce, AES-256-GCM ciphertext and tag) of the image under the data key of the subject
the caller names, bound to the camera, the blob id and the file's class. Its suffix says its class:
`<id>.sealed` a sensitive camera's snapshot (sensitive data), `<id>.psealed` a personal
camera's snapshot on a site with a master key (personal data). A sealed file renamed to the other
suffix does not open. The first copy's id is the sha256 of the plain image, so links and dedupe
work as for plain ones; the file holds no byte of the image in clear. A file is never sealed
again under another key. Sealing and opening go through the sealer
registered for the blob folder (`edge.store.rows.register`, done by the privacy component where the
site has a master key): without one a sealed snapshot is refused (`BlobSealError`), never written
in clear. Plain `<sha256>.jpg` files are personal data.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

BLOB_ID_RE = re.compile(r"^[0-9a-f]{64}$")
SUFFIX = ".jpg"
SEALED_SUFFIX = ".sealed"  # a sealed sensitive snapshot
PERSONAL_SEALED_SUFFIX = ".psealed"  # a sealed personal snapshot
SEALED_SUFFIXES = (SEALED_SUFFIX, PERSONAL_SEALED_SUFFIX)
SUFFIXES = (SUFFIX, SEALED_SUFFIX, PERSONAL_SEALED_SUFFIX)
SEALED_MAGIC = b"CESEAL1\n"  # a sealed snapshot file's first bytes; the envelope follows
CAMERA_KEY = "@camera:"  # + a camera id: the subject of its sealed snapshots that name no resident
PARTIAL_STALE_S = 600.0  # a write in progress is seconds old: an older partial file was cut short
HEAD_BYTES = 64  # read of a sealed file to learn its key: the magic and the envelope's header


class BlobSealer(Protocol):
    """What seals and opens snapshot files (`edge.privacy.atrest.Sealer`)."""

    def seal_blob(self, subject: str, data: bytes, where: str) -> bytes: ...

    def open_blob(self, envelope: bytes, where: str) -> bytes: ...


class BlobSealError(RuntimeError):
    """A snapshot to seal, and no key to seal it with: nothing was written."""


def valid_blob_id(blob_id: str) -> bool:
    return bool(BLOB_ID_RE.fullmatch(blob_id))


@dataclass(frozen=True, slots=True)
class Blob:
    id: str
    path: Path
    bytes: int
    sha256: str
    sealed: bool = False
    sensitive: bool = False  # a sensitive camera's snapshot (sealed); else personal data

    @property
    def privacy(self) -> str:
        """The class of the picture: `sensitive` or `personal`."""
        return "sensitive" if self.sensitive else "personal"


def _where(camera: str, blob_id: str, suffix: str = SEALED_SUFFIX) -> str:
    """What a sealed file is bound to: its camera, blob id and (a personal one) its class."""
    return f"{camera}/{blob_id}" + ("#personal" if suffix == PERSONAL_SEALED_SUFFIX else "")


def suffix_of(name: str) -> str | None:
    """The suffix of a file name of this store (`.jpg`, `.sealed`, `.psealed`), None for anything
    else (temp files)."""
    blob_id, dot, rest = name.partition(".")
    return dot + rest if valid_blob_id(blob_id) and dot + rest in SUFFIXES else None


def is_sensitive(name: str) -> bool:
    """A file name of a sealed sensitive snapshot."""
    return suffix_of(name) == SEALED_SUFFIX


def _blob_id(name: str) -> str | None:
    """The blob id of a file name of this store, None for anything else (temp files)."""
    return name.partition(".")[0] if suffix_of(name) is not None else None


def sealed_envelope(data: bytes) -> bytes | None:
    """The envelope of a sealed file's content, None when it is not one."""
    return data[len(SEALED_MAGIC) :] if data.startswith(SEALED_MAGIC) else None


def _key_tag(sealer: BlobSealer, subject: str) -> str:
    """What names `subject`'s key in a blob id without saying who it is: the site's own pseudonym
    of the subject (`SubjectKeys.local_pseudonym`), else a hash of the subject."""
    keys = getattr(sealer, "keys", None)
    named = getattr(keys, "local_pseudonym", None)
    if callable(named):
        return str(named(subject))
    return hashlib.sha256(subject.encode()).hexdigest()


def _sealed_under(path: Path, kid: bytes | None) -> bool:
    """The sealed file at `path` is under the key whose reference is `kid` (`kid_of`). An envelope
    opens with its version byte and its key's reference (`edge.privacy.keys.envelope_kid`, not
    imported: the privacy package imports this store)."""
    if kid is None:
        return False
    try:
        with open(path, "rb") as f:
            head = sealed_envelope(f.read(HEAD_BYTES))
    except FileNotFoundError:
        return False
    return head is not None and head[1 : 1 + len(kid)] == kid


def _sealed_id(
    sealer: BlobSealer, subject: str, data: bytes, digest: str, folder: Path, suffix: str
) -> tuple[str, bool]:
    """(blob id, whether the file is to be written) of `data` sealed under `subject`'s key in
    `folder`. One sealed copy per key: the picture's sha256 names the first copy, as for plain
    ones; a copy of the same picture under another key (another plate caught in the same frame, a
    periodic snapshot under the camera's key) gets its own id, the sha256 of the key's tag and the
    picture, so forgetting one subject never removes, and never re-keys, a picture filed under
    another. A file is never sealed again under another subject's key."""
    keys = getattr(sealer, "keys", None)
    kid_of = getattr(keys, "kid_of", None)
    kid = kid_of(subject) if callable(kid_of) else None
    first = folder / f"{digest}{suffix}"
    if first.exists():
        if _sealed_under(first, kid):
            return digest, False
    else:
        return digest, True
    tag = _key_tag(sealer, subject)
    own = hashlib.sha256(b"sealed for\x00" + tag.encode() + b"\x00" + data).hexdigest()
    path = folder / f"{own}{suffix}"
    # the id is this subject's alone: a file there under an older (forgotten) key of the same
    # subject is sealed again under the current one
    return own, not _sealed_under(path, kid)


class BlobStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def sealer(self) -> BlobSealer | None:
        """The sealer registered for this store's folder, None where the site has no master key."""
        from edge.store.rows import sealer_for

        found = sealer_for(self.root)
        return found if callable(getattr(found, "seal_blob", None)) else None  # type: ignore[return-value]

    def put(self, camera: str, data: bytes, seal: str | None = None, sensitive: bool = True) -> Blob:
        """Store `data` for `camera`; `seal`: the subject whose data key seals the file,
        BlobSealError when no sealer is registered for this folder; `sensitive` (sealed files
        only): a sensitive camera's snapshot (`.sealed`), else a personal one (`.psealed`)."""
        digest = hashlib.sha256(data).hexdigest()
        content = data
        suffix = SUFFIX
        sealer = None
        sensitive = sensitive and seal is not None
        if seal is not None:
            sealer = self.sealer()
            if sealer is None:
                raise BlobSealError(
                    f"camera {camera}: its snapshots are sealed and this process holds no key to "
                    "seal them (set privacy.master_key_file); the snapshot was not stored"
                )
            suffix = SEALED_SUFFIX if sensitive else PERSONAL_SEALED_SUFFIX
        folder = self.root / camera
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)  # mkdir's mode is filtered by the umask
        blob_id = digest
        if seal is None or sealer is None:
            final = folder / f"{digest}{suffix}"
            if final.exists():  # the same picture again: it becomes the newest, once
                os.utime(final)
                return Blob(digest, final, len(data), digest, False, False)
        else:
            blob_id, fresh = _sealed_id(sealer, seal, data, digest, folder, suffix)
            final = folder / f"{blob_id}{suffix}"
            if not fresh:  # this picture under this key again: it becomes the newest, once
                os.utime(final)
                return Blob(blob_id, final, len(data), digest, True, sensitive)
        if seal is not None and sealer is not None:
            content = SEALED_MAGIC + sealer.seal_blob(seal, data, _where(camera, blob_id, suffix))
        tmp = folder / f".{blob_id}.{os.getpid()}.tmp"
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            # a full disk: no part of the picture stays behind, outside every retention
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a power cut
        finally:
            os.close(fd)
        if seal is not None:
            # the same picture stored in clear before the site had a key: the sealed copy replaces it
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{digest}{SUFFIX}").unlink()
        return Blob(blob_id, final, len(data), digest, seal is not None, sensitive)

    def _entries(self, folder: Path) -> list[tuple[int, str, int]]:
        """(mtime in ns, file name, size) of the blobs in one camera's folder, oldest first. The
        same scan deletes what a write cut short left (`.ID.PID.tmp`: the process was killed while
        writing) once older than PARTIAL_STALE_S: no blob id, so no retention would ever see it."""
        entries = []
        stale = time.time_ns() - int(PARTIAL_STALE_S * 1e9)
        try:
            with os.scandir(folder) as it:
                for e in it:
                    if not e.is_file():
                        continue
                    if _blob_id(e.name) is not None:
                        st = e.stat()
                        entries.append((st.st_mtime_ns, e.name, st.st_size))
                    elif e.name.startswith(".") and e.name.endswith(".tmp") and e.stat().st_mtime_ns < stale:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(e.path)
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
        blob_id = _blob_id(name) or name
        return Blob(blob_id, path, size, blob_id, suffix_of(name) in SEALED_SUFFIXES, is_sensitive(name))

    def expire(self, personal_before: float | None, sensitive_before: float | None) -> list[Blob]:
        """Delete every camera's blobs stored before the cutoff of their class (epoch seconds):
        personal snapshots (plain `.jpg` and sealed `.psealed`) before `personal_before`, sensitive
        ones (`.sealed`) before `sensitive_before`; None keeps that class until the count and size
        caps of `prune`."""
        cutoffs = {
            False: -1 if personal_before is None else int(personal_before * 1e9),
            True: -1 if sensitive_before is None else int(sensitive_before * 1e9),
        }
        deleted: list[Blob] = []
        for folder in self._folders():
            for mtime_ns, name, size in self._entries(folder):
                if mtime_ns >= cutoffs[is_sensitive(name)]:
                    continue
                blob = self._delete(folder, name, size)
                if blob is not None:
                    deleted.append(blob)
        return deleted

    def prune(self, camera: str, keep: int, max_bytes: int, spare: Path | None = None) -> list[Blob]:
        """Delete this camera's oldest blobs until at most `keep` and `max_bytes` remain; `spare`
        (the file just stored) is never deleted, even when it alone is over `max_bytes`: a
        snapshot whose id was just handed out is there to be fetched."""
        folder = self.root / camera
        entries = self._entries(folder)
        total = sum(size for _, _, size in entries)
        deleted: list[Blob] = []
        for _, name, size in entries:
            if len(entries) - len(deleted) <= keep and total <= max_bytes:
                break
            if spare is not None and name == spare.name and folder == spare.parent:
                continue
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
            for suffix in SUFFIXES:
                path = folder / f"{blob_id}{suffix}"
                if path.is_file():
                    return path
        return None

    def open(self, path: Path) -> bytes:
        """The image in the file `find` gave: as stored, or opened with the registered sealer.
        KeyForgotten (a LookupError) when its subject was forgotten; BlobSealError when this
        process holds no key; ValueError when it does not open (altered, moved, another key store);
        FileNotFoundError when it went in between."""
        suffix = suffix_of(path.name)
        if suffix is None:
            raise ValueError(f"{path}: not a snapshot file")
        data = path.read_bytes()
        if suffix == SUFFIX:
            return data
        envelope = sealed_envelope(data)
        if envelope is None:
            raise ValueError(f"{path}: not a sealed snapshot")
        sealer = self.sealer()
        if sealer is None:
            raise BlobSealError(f"{path}: a sealed snapshot, and this process holds no key to open it")
        return sealer.open_blob(envelope, _where(path.parent.name, path.name[:64], suffix))

    def sealed_heads(self) -> list[tuple[Path, bytes]]:
        """(file, the first bytes of its envelope: enough for the key reference) of every sealed
        snapshot, sensitive and personal, for erasure and export by key."""
        out = []
        for folder in self._folders():
            for _mtime, name, _size in self._entries(folder):
                if suffix_of(name) not in SEALED_SUFFIXES:
                    continue
                try:
                    with open(folder / name, "rb") as f:
                        head = sealed_envelope(f.read(HEAD_BYTES))
                except FileNotFoundError:
                    continue
                if head is not None:
                    out.append((folder / name, head))
        return out

    def remove_sealed(self, sealed_by: Callable[[bytes], bool]) -> list[Blob]:
        """Delete every sealed snapshot whose envelope head `sealed_by` picks (a forgotten key's)."""
        deleted = []
        for path, head in self.sealed_heads():
            if sealed_by(head):
                blob = self._delete(path.parent, path.name, 0)
                if blob is not None:
                    deleted.append(blob)
        return deleted
