"""Data files private to the service user: files 0600, directories 0700, whatever the umask.

The journal, the trend index, the state database (password and session hashes) and the camera
snapshots are nobody else's business on a shared box. The `edge` command sets umask 077, so what
it creates is private from the start (SQLite gives a database's -wal and -shm files the mode of the
database itself); `make_private` tightens what exists already: files written by an older version,
or by a Runtime embedded without the command. It only removes permission bits, never adds any.

A directory that holds anything besides this gateway's data (/var/lib, /tmp, a home directory, a
project checkout with `storage.path: edge.db`, the demo's directory with its site file) or is owned
by another user keeps its mode: the data files in it are still made private one by one.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from edge.config import StorageConfig
from edge.paths import trend_path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
#: directories that hold more than this gateway's data, whoever owns them
SHARED_DIRS = frozenset(
    {
        *("/", "/tmp", "/var", "/var/tmp", "/var/lib", "/var/cache", "/home", "/root", "/srv", "/opt"),
        *("/etc", "/usr", "/run", "/mnt", "/media", "/dev/shm"),
    }
)


def shared_dir(path: Path, own: tuple[str, ...] | None = None) -> str | None:
    """Why directory `path` must keep its mode, or None when it holds only this gateway's data:
    entries whose names start with one of `own` (None: everything in it is ours)."""
    resolved = path.resolve()
    if str(resolved) in SHARED_DIRS:
        return "a system directory"
    if resolved == Path.home().resolve():
        return "a home directory"
    try:
        st = resolved.stat()
    except OSError:
        return "cannot be read"
    if st.st_uid != os.geteuid():
        return "owned by another user"
    if st.st_mode & (stat.S_ISVTX | stat.S_IWOTH):
        return "writable by everyone"
    if own is not None:
        try:
            other = next((e.name for e in os.scandir(resolved) if not e.name.startswith(own)), None)
        except OSError:
            return "cannot be listed"
        if other is not None:
            return f"holds other files too, such as {other}"
    return None


def _tighten(path: Path, mode: int, changed: list[str], kept: list[str]) -> None:
    """Remove the permission bits of `path` outside `mode` (a symlink is left alone)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o777 & ~mode:
        return
    try:
        os.chmod(path, st.st_mode & 0o777 & mode)
    except OSError as exc:  # another user's file: said in the log, the site still starts
        kept.append(f"{path} ({exc.strerror or exc})")
        return
    changed.append(str(path))


def database_files(storage: StorageConfig) -> list[Path]:
    """The journal, its trend index and the state database, each with the files beside it that
    share its name (SQLite's -wal, -shm, -journal, the journal's -status, a copy someone made)."""
    out: list[Path] = []
    for base in (storage.path, trend_path(storage.path), storage.resolved_state_path()):
        if base == ":memory:":
            continue
        db = Path(base)
        out.append(db)
        if db.parent.is_dir():
            out.extend(sorted(p for p in db.parent.glob(glob.escape(db.name) + "?*") if p.is_file()))
    return out


def make_private(
    storage: StorageConfig, *, blob_dir: bool = False, snapshots: bool = True
) -> tuple[list[str], list[str]]:
    """Tighten the site's data directories and files; create the snapshot directory privately
    when `blob_dir`; walk every folder and picture below it when `snapshots`. Returns (paths made
    private, directories left as they are with the reason)."""
    changed: list[str] = []
    kept: list[str] = []
    blobs = Path(storage.resolved_blob_dir())
    if blob_dir and not blobs.exists():
        blobs.mkdir(parents=True, exist_ok=True)  # mode= is filtered by the umask: chmod below
    files = database_files(storage)
    own = (*(f.name for f in files), blobs.name)
    dirs: list[tuple[Path, tuple[str, ...] | None]] = []
    for d, names in [(f.parent, own) for f in files] + ([(blobs, None)] if blobs.is_dir() else []):
        if d not in [seen for seen, _ in dirs] and d.is_dir():
            dirs.append((d, names))
    for d, names in dirs:
        reason = shared_dir(d, names)
        if reason is None:
            _tighten(d, PRIVATE_DIR, changed, kept)
        else:
            kept.append(f"{d} ({reason})")
    for f in files:
        _tighten(f, PRIVATE_FILE, changed, kept)
    if snapshots and blobs.is_dir():
        _tighten_tree(blobs, changed, kept)
    return changed, kept


def _tighten_tree(root: Path, changed: list[str], kept: list[str]) -> None:
    """Everything below the snapshot directory (camera folders and their pictures) is ours."""
    for folder, subdirs, names in os.walk(root, followlinks=False):
        base = Path(folder)
        for name in subdirs:
            _tighten(base / name, PRIVATE_DIR, changed, kept)
        for name in names:
            _tighten(base / name, PRIVATE_FILE, changed, kept)


def summary(paths: Iterable[str], limit: int = 8) -> str:
    """At most `limit` paths and how many more, for one log line."""
    items = list(paths)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
