"""A site's backup archive: journal, state DB, trend index and snapshot files, with a manifest.

`create` runs beside a working gateway: each database is copied by SQLite's backup API in one
snapshot (edge/store/backup.py), the trend index before the journal so its cursor is never ahead
of the journal it goes with. `restore` puts an archive back onto a stopped gateway; it checks the
whole archive (checksums, site id, schema versions, `PRAGMA integrity_check`) before it moves
anything, and keeps the files it replaces beside them as `*.pre-restore`.

A gateway counts as running while any process has its journal or state DB open: SQLite holds a
read lock on a byte of the database's `-shm` file for every open connection in WAL mode, and
`fcntl(F_GETLK)` names the process holding it. That covers the service, a second `edge run` and a
backup in progress, and needs no pid file that a crash could leave behind.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import importlib
import io
import json
import os
import shutil
import sqlite3
import struct
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from edge import paths
from edge.config import Site
from edge.state import too_new
from edge.store import backup as store_backup

FORMAT = 1
MANIFEST = "manifest.json"
MAX_MANIFEST = 4 << 20  # a manifest lists the files; more than this is not one of ours
# gzip level: for a journal of 1M readings (37 MB) on the build machine, 9 (tarfile's default)
# took 10.3 s and 6 took 1.7 s, for 0.3 % more bytes (9.4 MB); a gateway's CPU is slower still
COMPRESS = 6
# the archive's names for the site's files
JOURNAL, STATE, TREND, BLOBS = "journal.db", "state.db", "trend.db", "blobs"
# the byte of a WAL database's -shm file every connection holds a read lock on (SQLite's
# os_unix.c: UNIX_SHM_DMS = (22 + SQLITE_SHM_NLOCK) * 4 + SQLITE_SHM_NLOCK = 128)
SHM_DMS = 128
_FLOCK = "hhqqi4x"  # struct flock on Linux (x86_64, aarch64, armhf with 64-bit off_t)


#: the state DB's components of the core, and where each keeps its migrations; the features
#: declare theirs in their manifests (`Plugin.state_schemas`)
STATE_SCHEMAS = {
    "accounts": ("edge.api.accounts", "MIGRATIONS"),
    "audit": ("edge.audit", "MIGRATIONS"),
    "privacy": ("edge.privacy.subjects", "MIGRATIONS"),
    "tokens": ("edge.api.tokens", "MIGRATIONS"),
}


def state_versions() -> dict[str, int]:
    """The schema version of each state DB component this program knows (its migrations' count):
    the core's and those of the installed features."""
    from edge.plugins import registry

    versions = {
        component: len(getattr(importlib.import_module(module), name))
        for component, (module, name) in STATE_SCHEMAS.items()
    }
    for plugin in registry().plugins:
        if not plugin.missing():
            versions.update(
                {component: len(migrations()) for component, migrations in plugin.state_schemas.items()}
            )
    return versions


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message names the file and what to do."""


@dataclass
class Targets:
    """Where the site keeps the files an archive holds."""

    journal: Path
    state: Path
    trend: Path
    blobs: Path

    @classmethod
    def of(cls, site: Site) -> Targets:
        journal = site.storage.path
        return cls(
            Path(journal),
            Path(site.storage.resolved_state_path()),
            Path(paths.trend_path(journal)),
            Path(site.storage.resolved_blob_dir()),
        )


@dataclass
class Summary:
    """What a backup holds (the manifest's main facts), for the command's report."""

    path: Path
    site_id: str
    last_seq: int
    files: int
    bytes: int
    schema: dict[str, Any] = field(default_factory=dict)
    #: (first, last) seq of the replaced journal's records the restored one does not hold: kept
    #: in `kept`, and the restored journal goes on above them
    left_out: tuple[int, int] | None = None
    kept: Path | None = None
    #: the seq the operator said the receivers hold (`--continue-after`), where no journal was
    #: replaced or the replaced one could not be read
    continued_after: int | None = None
    #: what the restored site will lack (said, the restore is done all the same)
    warnings: list[str] = field(default_factory=list)
    #: the earlier `*.pre-restore` files (of a previous restore) this one deleted
    replaced_earlier: list[Path] = field(default_factory=list)
    #: the site's files this restore set aside as `*.pre-restore`
    set_aside: list[Path] = field(default_factory=list)
    #: (where it is kept, its last seq): the replaced journal, when it did not go on from the
    #: archive's (a replacement box's own first start): none of its records is in the restored one
    foreign_journal: tuple[Path, int] | None = None
    #: what the restore did to the features' state (`Plugin.restored_state`) and what it carried
    #: forward of the replaced files (`_carry_forward`), one line each
    state_changes: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _blob_files(root: Path) -> Iterator[tuple[str, Path]]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield f"{BLOBS}/{path.relative_to(root).as_posix()}", path


def running_holder(targets: Targets) -> tuple[Path, int] | None:
    """(database, pid) of a process that has the journal or the state DB open, else None."""
    for db in (targets.journal, targets.state):
        shm = Path(f"{db}-shm")
        try:
            fd = os.open(shm, os.O_RDONLY)
        except FileNotFoundError:
            continue  # no connection in WAL mode: SQLite removes it when the last one closes
        except OSError as exc:
            raise BackupError(f"{shm}: cannot tell whether the gateway runs: {exc.strerror}") from None
        try:
            probe = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, SHM_DMS, 1, 0)
            kind, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, probe))
        finally:
            os.close(fd)
        if kind != fcntl.F_UNLCK:
            return db, pid
    return None


def create(site: Site, out: Path) -> Summary:
    """Write a backup of the site's data to `out` (replaced atomically, readable by its owner only)."""
    targets = Targets.of(site)
    if not targets.journal.exists():
        raise BackupError(
            f"{targets.journal}: no journal to back up (storage.path of {site.source}; has the site run?)"
        )
    out = out.absolute()
    clash = site_file_at(site, targets, out)
    if clash:
        raise BackupError(
            f"{out}: that is {clash}; writing the archive there would replace it. Name a file "
            "outside the site's data, e.g. --out /var/backups/edge-$(date +%F).tar.gz"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    schema: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix=".edge-backup-", dir=out.parent) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        if targets.trend.exists():
            _copy_sound(targets.trend, work / TREND)
            schema["trend"] = store_backup.trend_facts(str(work / TREND)).versions["trend"]
        _copy_sound(targets.journal, work / JOURNAL)
        facts = store_backup.journal_facts(str(work / JOURNAL))
        schema["journal"] = facts.versions["journal"]
        if targets.state.exists():
            _copy_sound(targets.state, work / STATE)
            schema["state"] = store_backup.state_facts(str(work / STATE)).versions
        for name, path in _blob_files(targets.blobs):
            # copied first, so what is summed is what is archived even if retention deletes it now
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copy2(path, work / name)
            except FileNotFoundError:
                continue  # a snapshot expired while the backup ran
        members = [(name, work / name) for name in (JOURNAL, STATE, TREND) if (work / name).exists()]
        members += list(_blob_files(work / BLOBS))
        for name, path in members:
            files[name] = {"sha256": _sha256(path), "size": path.stat().st_size}
        from edge import __version__

        manifest = {
            "format": FORMAT,
            "site_id": site.site.id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "edge_version": __version__,
            "schema": schema,
            "journal_last_seq": facts.last_seq,
            "files": files,
        }
        partial = work / "archive.tar.gz"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=COMPRESS) as tar:
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for name, path in members:
                tar.add(path, arcname=name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
    return Summary(out, site.site.id, facts.last_seq or 0, len(files), out.stat().st_size, schema)


def _copy_sound(src: Path, dst: Path) -> None:
    """Copy one database for the archive and check the copy as a restore will (`PRAGMA
    integrity_check`): an archive holding a damaged copy would be written, and refused by every
    restore of it, exactly when it is needed."""
    try:
        store_backup.copy_database(str(src), str(dst))
    except sqlite3.OperationalError:
        raise  # the copy's disk, a lock: not the database's damage
    except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB met while copying
        problem: str | None = str(exc)
    else:
        problem = store_backup.integrity_problem(str(dst))
    if problem:
        raise BackupError(
            f"{src} fails PRAGMA integrity_check ({problem}): the database is damaged, and a restore "
            "would refuse an archive holding this copy. No archive was written. Keep the last good "
            "archive; the damaged file needs repair (e.g. sqlite3's .recover into a new file, with the "
            "gateway stopped) or a restore of that archive"
        )


def refuse_own_file(site: Site, out: str) -> str | None:
    """The error line for an output file a person names (`--out`, `--output`) that is one of the
    site's own files (`site_file_at`), None when it is not: the command then writes nothing."""
    clash = site_file_at(site, Targets.of(site), Path(out).absolute())
    if clash:
        return f"error: {out}: that is {clash}; writing there would replace it. Name a new file; nothing was written"
    return None


def site_file_at(site: Site, targets: Targets, out: Path) -> str | None:
    """What of the site's own files `out` resolves to (links followed), None when none: the
    journal, state DB and trend index with their side files, the data keys (keys.db, its -wal,
    which holds the newest keys, -shm and -journal, the forget lock), the lock and status files,
    the site file, the master key, the snapshot folder. The guard of every command that writes a
    file a person names (`edge backup --out`, `edge privacy export` and `backup-keys --out`)."""
    from edge.privacy.atrest import keys_path
    from edge.privacy.subjects import FORGET_LOCK_SUFFIX
    from edge.runtime import LOCK_SUFFIX
    from edge.store.space import STATUS_SUFFIX

    where = out.resolve()
    named: dict[Path, str] = {}
    for what, db in (
        ("the journal", targets.journal),
        ("the state DB", targets.state),
        ("the trend index", targets.trend),
    ):
        for suffix in SIDE_FILES:
            named[Path(f"{db}{suffix}")] = f"{what}'s file {db}{suffix}"
            named[Path(f"{db}.pre-restore{suffix}")] = f"a file a restore kept, {db}.pre-restore{suffix}"
    named[Path(f"{targets.journal}{STATUS_SUFFIX}")] = (
        f"the journal's status file {targets.journal}{STATUS_SUFFIX}"
    )
    keys = keys_path(targets.journal)
    named[Path(keys)] = f"the data keys {keys}"
    for suffix in (*SIDE_FILES[1:], FORGET_LOCK_SUFFIX):
        named[Path(f"{keys}{suffix}")] = f"the data keys' file {keys}{suffix}"
    named[Path(f"{targets.journal}{LOCK_SUFFIX}")] = f"the site's lock file {targets.journal}{LOCK_SUFFIX}"
    named[Path(site.source)] = f"the site file {site.source}"
    if site.privacy.master_key_file is not None:
        named[Path(site.privacy.master_key_file)] = f"the master key {site.privacy.master_key_file}"
    for path, what in named.items():
        if path.resolve() == where:
            return what
    blobs = targets.blobs.resolve()
    if where == blobs or where.is_relative_to(blobs):
        return f"inside the snapshot folder {targets.blobs}"
    return None


def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts and name == p.as_posix() and bool(name)


def _read_manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
    except KeyError:
        raise BackupError(f"{archive}: not a Community Edge backup (no {MANIFEST} in it)") from None
    stream = tar.extractfile(member) if member.isfile() and member.size <= MAX_MANIFEST else None
    if stream is None:
        raise BackupError(f"{archive}: {MANIFEST} is not a file of at most {MAX_MANIFEST} bytes")
    try:
        manifest = json.loads(stream.read())
    except ValueError as exc:
        raise BackupError(f"{archive}: {MANIFEST} is not valid JSON ({exc}); the backup is damaged") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("files"), dict)
        or not all(
            isinstance(f, dict) and isinstance(f.get("sha256"), str) for f in manifest["files"].values()
        )
    ):
        raise BackupError(f"{archive}: {MANIFEST} is not a backup manifest of format {FORMAT}")
    return manifest


def _unpack(archive: Path, site: Site, into: Path) -> dict[str, Any]:
    """Check the archive and extract it into `into`; nothing of the site is touched."""
    try:
        tar = tarfile.open(archive, "r:*")
    except FileNotFoundError:
        raise BackupError(f"{archive}: no such file") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(
            f"{archive}: not a backup archive (a .tar.gz written by `edge backup`): {exc}"
        ) from None
    with tar:
        try:
            manifest = _read_manifest(tar, archive)
            if manifest.get("site_id") != site.site.id:
                raise BackupError(
                    f"{archive}: this is a backup of site {manifest.get('site_id')!r}, and {site.source} "
                    f"is site {site.site.id!r}; restore a backup of this site"
                )
            files: dict[str, Any] = manifest["files"]
            if JOURNAL not in files:
                raise BackupError(f"{archive}: the manifest lists no {JOURNAL}; the backup is damaged")
            seen: set[str] = set()
            for member in tar:
                if member.name == MANIFEST:
                    continue
                if member.name not in files or not member.isfile() or not _safe_name(member.name):
                    raise BackupError(f"{archive}: {member.name!r} is not a file its manifest lists; refused")
                stream = tar.extractfile(member)
                assert stream is not None
                h = hashlib.sha256()
                # read errors are the archive's; write errors are the disk's (_WriteFailed)
                fd = _create(into / member.name, into.parent)
                try:
                    while chunk := stream.read(1 << 20):
                        h.update(chunk)
                        _write_all(fd, chunk, into.parent)
                finally:
                    _close(fd, into.parent)
                if h.hexdigest() != files[member.name].get("sha256"):
                    raise BackupError(
                        f"{archive}: {member.name} does not match its checksum; the backup is damaged"
                    )
                seen.add(member.name)
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise BackupError(f"{archive}: cannot read the archive ({exc}); the backup is damaged") from None
    missing = sorted(set(files) - seen)
    if missing:
        raise BackupError(
            f"{archive}: {', '.join(missing[:3])} listed in the manifest but not in the archive"
        )
    for name in (JOURNAL, STATE, TREND):
        if name in files:
            problem = store_backup.integrity_problem(str(into / name))
            if problem:
                raise BackupError(f"{archive}: {name} fails PRAGMA integrity_check: {problem}")
    version = store_backup.journal_facts(str(into / JOURNAL)).versions["journal"]
    if store_backup.journal_too_new(version):
        raise BackupError(
            f"{archive}: its journal has schema version {version}, newer than this program's; "
            "install the release that wrote it"
        )
    if STATE in files:
        known = state_versions()
        stored = store_backup.state_facts(str(into / STATE)).versions
        for component, version in sorted(stored.items()):
            if version > known.get(component, version):
                raise BackupError(too_new(f"{archive}: {STATE}", component, version, known[component]))
    return manifest


class _WriteFailed(BackupError):
    """Writing on this box failed (no room, no permission): the archive is not at fault."""


def _write_failed(exc: OSError, where: Path) -> _WriteFailed:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = f"no room left in {where}"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"no permission to write in {where}"
    else:
        why = f"cannot write in {where} ({exc.strerror})"
    return _WriteFailed(
        f"{why}; the archive is intact and nothing of the site was replaced: free space there or "
        "fix its permissions, then restore again"
    )


def _create(path: Path, where: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise _write_failed(exc, where) from None


def _create_dir(path: Path, where: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _write_failed(exc, where) from None


def _write_all(fd: int, data: bytes, where: Path) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except OSError as exc:
            raise _write_failed(exc, where) from None


def _close(fd: int, where: Path) -> None:
    try:
        os.close(fd)
    except OSError as exc:
        raise _write_failed(exc, where) from None


def _copy_tree(src: Path, dst: Path, where: Path) -> None:
    """Copy a file, or a folder of files, to `dst`; write errors are said as the disk's."""
    if src.is_dir():
        _create_dir(dst, where)
        for path in sorted(src.rglob("*")):
            if path.is_dir():
                _create_dir(dst / path.relative_to(src), where)
            else:
                _copy_tree(path, dst / path.relative_to(src), where)
        return
    fd = _create(dst, where)
    try:
        with open(src, "rb") as f:
            while chunk := f.read(1 << 20):
                _write_all(fd, chunk, where)
    finally:
        _close(fd, where)


#: a database's files beside it, set aside and put back together with it
SIDE_FILES = ("", "-wal", "-shm", "-journal")


class _Swap:
    """The renames that put the restored files in place, undone together on any failure.

    Every restored file is first copied next to the file it replaces (the only step that needs
    room, and it touches nothing of the site); only renames within each folder follow: an earlier
    `*.pre-restore` into the staging folder, the live files to `*.pre-restore`, the staged ones
    into place. A failure among them renames everything back, so the site is the archive's or
    what it was, never a mix."""

    def __init__(self) -> None:
        self.done: list[tuple[Path, Path]] = []
        self.earlier: list[Path] = []  # earlier *.pre-restore files, deleted once all is in place
        self.aside: list[Path] = []  # the site's files now kept as *.pre-restore

    def rename(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)
        self.done.append((src, dst))

    def undo(self) -> None:
        for src, dst in reversed(self.done):
            os.replace(dst, src)
        self.done.clear()

    def place(self, dest: Path, staged: Path | None, trash: Path) -> None:
        """Set `dest` (and its side files) aside as `*.pre-restore`, then put `staged` there."""
        for suffix in SIDE_FILES:
            kept = Path(f"{dest}.pre-restore{suffix}")
            if kept.exists() or kept.is_symlink():
                self.rename(kept, trash / kept.name)
                self.earlier.append(kept)
        for suffix in SIDE_FILES:
            live = Path(f"{dest}{suffix}")
            if live.exists() or live.is_symlink():
                self.rename(live, Path(f"{dest}.pre-restore{suffix}"))
                self.aside.append(Path(f"{dest}.pre-restore{suffix}"))
        if staged is not None:
            self.rename(staged, dest)


def restore(site: Site, archive: Path, continue_after: int | None = None) -> Summary:
    """Put the archive's files in place of the site's; refuses while the gateway runs.

    `continue_after`: the highest seq the receivers hold of this gateway, for a site with no
    journal to replace (a replacement box): new records continue above it."""
    targets = Targets.of(site)
    holder = running_holder(targets)
    if holder:
        raise BackupError(
            f"{holder[0]} is open in process {holder[1]} (the gateway, or another edge command): stop "
            "the service first (systemctl stop community-edge), then restore"
        )
    _refuse_unused_restore(targets.journal)
    _create_dir(targets.journal.parent, targets.journal.parent)
    from edge.runtime import SiteLock, StartError

    # held as a gateway holds it: one started during the restore is refused, instead of opening
    # files while they are replaced (a gateway holding it before its files are open is seen here)
    lock = SiteLock(str(targets.journal))
    try:
        lock.acquire()
    except StartError as exc:
        raise BackupError(str(exc)) from None
    try:
        return _restore_locked(site, archive, continue_after, targets)
    finally:
        lock.release()


def _restore_locked(site: Site, archive: Path, continue_after: int | None, targets: Targets) -> Summary:
    with tempfile.TemporaryDirectory(prefix=".edge-restore-", dir=targets.journal.parent) as tmp:
        work = Path(tmp)
        manifest = _unpack(archive.absolute(), site, work)
        holder = running_holder(targets)  # checking took a while: the service may have started
        if holder:
            raise BackupError(
                f"{holder[0]} was opened by process {holder[1]} during the restore; nothing replaced"
            )
        warnings = _keys_warning(site, targets, work / JOURNAL)
        try:
            seqs = _continue_seqs(site, targets.journal, work / JOURNAL, archive, manifest, continue_after)
            changes, more, noted = _restore_state(work / STATE, seqs.facts)
            warnings += more
            carried, more, fields = _carry_forward(work / STATE, targets, seqs.facts, archive, manifest)
            changes += carried
            warnings += more
            noted.update(fields)
            _leave_note(work / JOURNAL, seqs, noted, archive, manifest)
            _claim_for(work / STATE, targets.journal.name)
        except sqlite3.OperationalError as exc:  # the copies in `work` could not be written
            raise _write_failed(OSError(errno.EIO, str(exc)), work.parent) from None
        places = [
            (work / JOURNAL, targets.journal),
            (work / STATE, targets.state),
            (work / TREND, targets.trend),
            (work / BLOBS, targets.blobs),
        ]
        earlier, aside = _put_in_place([(s, d) for s, d in places if s.exists() or d.exists()], work)
    files = manifest["files"]
    return Summary(
        archive,
        site.site.id,
        int(manifest.get("journal_last_seq") or 0),
        len(files),
        sum(int(f.get("size") or 0) for f in files.values()),
        dict(manifest.get("schema") or {}),
        seqs.left_out,
        seqs.kept,
        continue_after,
        warnings,
        [p for p in earlier if p.name.endswith(".pre-restore")],
        [p for p in aside if p.name.endswith(".pre-restore")],
        (Path(f"{targets.journal}.pre-restore"), seqs.foreign) if seqs.foreign is not None else None,
        changes,
    )


def _claim_for(state: Path, journal_name: str) -> None:
    """The restored state DB goes with the journal it is restored beside (`belongs_to`, see
    `edge.state`): the archive's journal may have had another name (a site moved to a new box or
    folder), and a state DB naming that one would refuse the restored site's start."""
    if not state.exists():
        return
    conn = sqlite3.connect(state)
    try:
        with conn:
            if conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='belongs_to'"
            ).fetchone():
                conn.execute("UPDATE belongs_to SET journal=?", (journal_name,))
    finally:
        conn.close()


def _put_in_place(places: list[tuple[Path, Path]], work: Path) -> tuple[list[Path], list[Path]]:
    """Replace each `dest` by its `src` of `work` (a missing `src`: `dest` only set aside), all or
    nothing (`_Swap`); returns the earlier `*.pre-restore` files deleted and those made now."""
    staging: dict[Path, Path] = {}
    try:
        staged: list[tuple[Path | None, Path]] = []
        for src, dest in places:
            folder = dest.parent
            if folder not in staging:
                _create_dir(folder, folder)
                try:
                    staging[folder] = Path(tempfile.mkdtemp(prefix=".edge-restore-", dir=folder))
                except OSError as exc:
                    raise _write_failed(exc, folder) from None
            if not src.exists():
                staged.append((None, dest))
                continue
            copy = staging[folder] / dest.name
            if os.stat(work).st_dev == os.stat(folder).st_dev:
                os.replace(src, copy)
            else:
                _copy_tree(src, copy, folder)  # another filesystem: the one step that needs room
            _own_like(copy, dest)
            staged.append((copy, dest))
        swap = _Swap()
        try:
            for staged_copy, dest in staged:
                trash = staging[dest.parent] / "earlier"
                trash.mkdir(exist_ok=True)
                swap.place(dest, staged_copy, trash)
        except BaseException as exc:
            try:
                swap.undo()
            except OSError as undo_exc:
                stranded = ", ".join(str(f) for f in staging.values())
                staging.clear()  # they hold what could not be put back: left for the operator
                raise BackupError(
                    f"the restore failed ({exc}) and putting the site's files back failed too "
                    f"({undo_exc}): files not in place are in {stranded}"
                ) from None
            raise
        return swap.earlier, swap.aside
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)


def _own_like(staged: Path, dest: Path) -> None:
    """Give a restored file (or folder) the owner and group of the one it replaces, else of its
    folder: a restore run as root (by hand, or install.sh's rollback) must leave files the
    service's user can open. Only root can give a file away; anyone else's files are theirs."""
    if os.geteuid() != 0:
        return
    st = os.lstat(dest) if os.path.lexists(dest) else os.stat(dest.parent)
    for path in [staged, *(sorted(staged.rglob("*")) if staged.is_dir() else [])]:
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)


def _refuse_unused_restore(journal: Path) -> None:
    """A restored journal no start has used yet, whose left-out records only its `*.pre-restore`
    holds: another restore would replace that file, the only copy of those records here."""
    note = store_backup.restored_note(str(journal))
    kept = Path(f"{journal}.pre-restore")
    if note is None or not kept.exists():
        return
    other = note.get("replaced_journal")
    if isinstance(other, dict) and not note.get("kept_in"):
        raise BackupError(
            f"{journal} was restored from {note.get('archive')} and the gateway has not started since: "
            f"the journal it replaced (a journal of its own, seqs up to {other.get('last_seq')}) is "
            f"kept only in {kept}, which another restore would replace. Nothing was replaced. To keep "
            f"it, move {kept} (with any {kept.name}-wal beside it) to another folder, then restore again"
        )
    if not note.get("kept_in"):
        return
    raise BackupError(
        f"{journal} was restored from {note.get('archive')} and the gateway has not started since: "
        f"the records {note.get('first_seq')}-{note.get('last_seq')} that restore left out are kept "
        f"only in {kept}, which another restore would replace. Nothing was replaced. To keep them, "
        f"move {kept} (with any {kept.name}-wal beside it) to another folder, then restore again"
    )


@dataclass
class _Continuation:
    """Where the restored journal goes on (`_continue_seqs`): the range of seqs it skips (None:
    none), the file that keeps those of its records the replaced journal had, the replaced
    journal's last seq where it was of another line, the note for the next start (None: nothing to
    say) and what the features are told of it."""

    left_out: tuple[int, int] | None
    kept: Path | None
    foreign: int | None
    note: dict[str, object] | None
    facts: store_backup.RestoreFacts


def _continue_seqs(
    site: Site,
    journal: Path,
    copy: Path,
    archive: Path,
    manifest: dict[str, Any],
    continue_after: int | None,
) -> _Continuation:
    """Raise the restored journal's last seq to the replaced one's, so no seq is issued twice.

    Receivers de-duplicate by (gateway, seq), and pull consumers and sinks have acknowledged seqs
    up to the replaced journal's last: a record that reused one of those seqs would be dropped as
    a duplicate or skipped. The records of the replaced journal above the backup's last seq are
    not in the restored one; their range goes into its note (`_leave_note`), for the next start to
    journal as `journal_restored`. That holds only for a journal that went on from the archive's
    (`store_backup.not_descended`): with no journal to replace, one that cannot be read, or one of
    its own (a replacement box started once, seqs 1-133 of its own while the receivers hold the
    lost box's up to 395), nothing here says how far the gateway went on after the backup: refused
    unless the operator gives the highest seq the receivers hold (`continue_after`)."""
    restored = store_backup.archived_seq(str(copy))
    replaced: int | None = None
    problem = ""
    foreign: int | None = None  # the replaced journal's last seq, when it is not of the archive's line
    line: str | None = None  # the replaced journal's journal_id, when it went on from the archive's
    if journal.exists():
        try:
            replaced = store_backup.issued_seq(str(journal))
            why = store_backup.not_descended(str(journal), str(copy))
            line = store_backup.journal_id_at(str(journal)) if why is None else None
        except sqlite3.Error as exc:
            replaced = None
            problem = f"the journal it would replace, {journal}, cannot be read ({exc})"
        else:
            if why is not None:
                foreign = replaced
                problem = f"the journal it would replace, {journal} (seqs up to {replaced}), {why}"
    else:
        problem = f"there is no journal to replace at {journal} (storage.path of {site.source})"
    store_backup.carry_journal_id(str(copy), line)
    if problem and continue_after is None:
        raise BackupError(
            f"{problem}, so the restore cannot tell how far the gateway went on after this backup "
            f"(it ends at seq {restored}); new records would reuse seqs the receivers may already "
            "hold with other records. Nothing was replaced. Ask the central platform (and every "
            f"pull consumer) for the highest seq it holds from gateway {site.site.id!r}, then run:\n"
            f"  edge restore -c {site.source} {archive} --continue-after SEQ\n"
            "with SEQ that seq, or a higher one when unsure (the seqs skipped are named by a "
            "journal_restored event at the next start)"
        )
    facts = store_backup.RestoreFacts(
        archive.name,
        restored,
        str(journal) if replaced is not None else None,
        restored if foreign is None else 0,
    )
    # a journal of another line still issued its seqs under this gateway's name: never reused either
    top = max(replaced or 0, continue_after or 0)
    if top <= restored and continue_after is None:
        return _Continuation(None, None, None, None, facts)
    # the records left out are kept only where the replaced journal went on from the backup
    kept = Path(f"{journal}.pre-restore") if replaced is not None and foreign is None else None
    note: dict[str, object] = {
        "first_seq": restored + 1,
        "last_seq": max(top, restored),
        "archive": archive.name,
        "archive_created": manifest.get("created"),
        "kept_in": kept.name if kept else None,
    }
    if continue_after is not None:
        note["continue_after"] = continue_after
    if foreign is not None:
        # set aside whole, and named: its records are none of the range above
        note["replaced_journal"] = {"kept_in": f"{journal.name}.pre-restore", "last_seq": foreign}
    left_out = (restored + 1, top) if top > restored else None
    # records journaled after the backup are missing from the restored journal: from its newest
    # record to the replaced journal's newest (where it went on from the backup), else to now
    # (a lost box went on for as long as the operator's --continue-after says, at most until now)
    since = store_backup.newest_ts(str(copy))
    if since is None:
        since = _created(manifest)
    until = None
    if kept is not None:
        with contextlib.suppress(sqlite3.Error):  # read a moment ago: if not now, the time of the restore
            until = store_backup.newest_ts(str(journal), read_only=False)
    facts = dataclasses.replace(
        facts,
        gap=left_out,
        gap_from=since,
        gap_until=max(until if until is not None else time.time(), since or 0.0),
    )
    return _Continuation(left_out, kept, foreign, note, facts)


def _created(manifest: dict[str, Any]) -> float | None:
    """The archive's creation time (its manifest's `created`), None when it does not say."""
    try:
        return calendar.timegm(time.strptime(str(manifest.get("created")), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def _restore_state(
    state: Path, facts: store_backup.RestoreFacts
) -> tuple[list[str], list[str], dict[str, Any]]:
    """Run each installed feature's restore step (`Plugin.restored_state`) on the restored state
    DB copy, for a component the copy holds: the lines they say, their warnings, and the fields
    they give the journal_restored event."""
    if not state.exists():
        return [], [], {}
    from edge.plugins import registry

    held = store_backup.state_facts(str(state)).versions
    said: list[str] = []
    warnings: list[str] = []
    noted: dict[str, Any] = {}
    for plugin in registry().plugins:
        if plugin.missing():
            continue
        for component, step in plugin.restored_state.items():
            if component not in held:
                continue
            lines, fields = step(str(state), facts)
            for line in lines:
                if line.startswith("warning: "):
                    warnings.append(line.removeprefix("warning: "))
                else:
                    said.append(line)
            noted.update(fields)
    return said, warnings, noted


def _carry_forward(
    state: Path, targets: Targets, facts: store_backup.RestoreFacts, archive: Path, manifest: dict[str, Any]
) -> tuple[list[str], list[str], dict[str, Any]]:
    """Carry into the restored state DB copy what the files it replaces hold that must outlive a
    restore, and audit the restore there: the lines it says, its warnings and the fields of its
    journal_restored event.

    - The erasures (`edge privacy forget`) done since the backup: the replaced state DB's queued
      erasures and the `subject_erased` events of the replaced journal above the archive's seqs
      are queued again (`store_backup.queue_erasures`), for the next start to journal above the
      restore's seqs: a recipient whose cursor was below the replaced journal's event would never
      get it (those seqs are the restore's gap), and its copy of the resident would stay. The
      forgotten keys stay deleted: keys.db is not in the archive.
    - The audit log: the replaced log's entries newer than the archive's, as they are, where it
      went on from it (`audit.carry_forward`), so no entry is lost and no id is taken again.
    - The restore itself, as an audit entry."""
    from edge import audit, fmt
    from edge.privacy.subjects import COMPONENT, MIGRATIONS
    from edge.state import StateDB

    said: list[str] = []
    warnings: list[str] = []
    fields: dict[str, Any] = {}
    replaced_state = targets.state if targets.state.exists() else None
    notices, problems = store_backup.erasures_since(
        str(targets.journal) if facts.replaced is not None else None,
        str(replaced_state) if replaced_state is not None else None,
        facts.replaced_after,
    )
    warnings += [f"erasures done since the backup may not all be carried forward: {p}" for p in problems]
    db = StateDB(str(state))  # the archive's copy, or a new one where the archive holds none
    try:
        erasures = 0
        if notices:
            db.migrate(COMPONENT, MIGRATIONS)
            erasures = store_backup.queue_erasures(str(state), notices)
        if erasures:
            fields["erasures_carried"] = erasures
            said.append(
                f"{fmt.count(erasures, 'erasure')} done since the backup (edge privacy forget) carried forward: "
                "the next start journals each as a subject_erased event again, for every sink and pull "
                "consumer; the forgotten keys stay deleted"
            )
        kept = audit.Carried(0, None)
        if replaced_state is not None:
            kept = audit.carry_forward(db, str(replaced_state))
        if kept.entries:
            fields["audit_entries_carried"] = kept.entries
            said.append(
                f"{fmt.count(kept.entries, 'audit entry', 'audit entries')} written since the backup "
                f"carried forward from {replaced_state}"
            )
        detail: dict[str, Any] = {
            "archive_created": manifest.get("created"),
            "archive_last_seq": facts.archive_last_seq,
            "erasures_carried": erasures,
            "audit_entries_carried": kept.entries,
        }
        if kept.problem is not None:
            detail["replaced_log"] = {
                "kept_in": f"{replaced_state}.pre-restore",
                "last_id": kept.replaced_last_id,
            }
            warnings.append(
                f"{kept.problem}: its entries are not in the restored log; they are kept in "
                f"{replaced_state}.pre-restore, and the restored log's next entries are numbered above "
                f"#{kept.replaced_last_id or 0}"
            )
        entry = audit.record_above(db, kept.replaced_last_id or 0, "cli", "restore", archive.name, **detail)
        said.append(f"this restore is audit entry #{entry}")
        db.conn.execute("PRAGMA journal_mode=DELETE")  # one file again, as the archive's copy was
    finally:
        db.close()
    return said, warnings, fields


def _leave_note(
    copy: Path, seqs: _Continuation, noted: dict[str, Any], archive: Path, manifest: dict[str, Any]
) -> None:
    """Leave the restore's note in the journal copy, for the next start to journal as
    `journal_restored`, with what the features' restore steps said (`noted`): where seqs were
    skipped, or where a feature's state was changed (the event then names no skipped seq:
    `first_seq` is above `last_seq`)."""
    note = seqs.note
    if note is None and not noted:
        return
    if note is None:
        last = seqs.facts.archive_last_seq
        note = {
            "first_seq": last + 1,
            "last_seq": last,
            "archive": archive.name,
            "archive_created": manifest.get("created"),
            "kept_in": None,
        }
    note = {**note, **noted}
    last_seq = note["last_seq"]
    assert isinstance(last_seq, int)
    store_backup.continue_after(str(copy), last_seq, note)


def _keys_warning(site: Site, targets: Targets, copy: Path) -> list[str]:
    """A site that seals records, with no `keys.db` to open those of the archive: said, not refused
    (the rest of the journal, the rules and the accounts are still worth having back)."""
    if site.privacy.master_key_file is None:
        return []
    from edge.privacy.atrest import keys_path

    keys = Path(keys_path(targets.journal))
    if keys.exists() or not store_backup.holds_sealed(str(copy)):
        return []
    return [
        f"the restored journal holds records sealed at rest and there is no {keys}: backups leave "
        "the data keys out, so their sealed values will not open "
        "unless this site's keys.db is put back beside the journal before the gateway starts, "
        "with the same privacy.master_key_file (docs/fleet.md, 'The subject keys are not in the "
        "archive')"
    ]
