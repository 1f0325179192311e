"""`edge privacy report`: the record of processing for an auditor, from the site file and its
journal (read-only; the gateway may be running)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from edge import fmt
from edge.cli import PartlyDone, Subcommands, add_command, add_command_group, arg
from edge.paths import sqlite_uri

JSON_SHAPE = """\
--json prints one object:
  site, config, journal          the site id, the site file, the journal file
  recipients[]                   id, kind (sink|consumer|server), type, enabled, max_privacy, include,
                                 pseudonymise (null when the recipient has no pseudonymise: block),
                                 points (a server's map: the Modbus server, id modbus_server)
  classes.{public,personal,sensitive}
                                 retention_s (null: kept until the byte cap), encrypted_at_rest,
                                 held (records in the journal now; null when there is no journal)
  held_note                      why held is null, or "" when the counts were read
  points[]                       point, source (device), privacy, retention_s, encrypted_at_rest,
                                 recipients.{ID: {receives: clear|pseudonymised|fields_withheld|withheld,
                                 why (withheld, fields_withheld), fields (pseudonymised),
                                 withheld_fields (fields_withheld)}}
  events[]                       kind, source (device, rules or gateway), privacy, note, and the
                                 same retention_s, encrypted_at_rest and recipients"""


FORCE = arg(
    "--force",
    action="store_true",
    help="replace FILE if it exists (never one of the site's own files: journal, state DB, keys, "
    "site file, master key)",
)


def register(sub: Subcommands) -> None:
    group = add_command_group(
        sub,
        "privacy",
        help="the record of processing: who receives which personal data, kept how long",
        description="Privacy of residents' data (PIPL): what the site collects, who receives it and\n"
        "how long it is kept. See docs/privacy.md.",
        dest="privacy_command",
    )
    add_command(
        group,
        "report",
        help="the record of processing for an auditor, per point and event kind",
        description="For every point of the site's devices and every event kind the site can produce\n"
        "(the devices' declared events, the shipped drivers' own kinds, the rule packs' alert and\n"
        "event actions, the gateway's kinds), its privacy class, and for every upstream sink, pull\n"
        "consumer and the Modbus server's map whether it receives it in clear, pseudonymised or\n"
        "withheld (judged by the same filter the sinks and the pull API apply: include lists and\n"
        "max_privacy; the map serves its points up to its own max_privacy). Then each\n"
        "class's retention (privacy.retention, else storage.keep_history), whether it is encrypted\n"
        "at rest (sensitive records are, where privacy.master_key_file is set), and the records the journal holds now per class (read-\n"
        "only; a site that has not run yet has none). A rule's alert or event takes the class of\n"
        "what fired it: it is listed at the most private class of the points its trigger matches\n"
        "and of the event kinds its event: triggers match (as the devices declare them, else the\n"
        "kind's default: a health measurement is sensitive).\n\n" + JSON_SHAPE,
        epilog="examples:\n  edge privacy report -c /etc/community-edge/site.yaml\n"
        "  edge privacy report -c site.yaml --json > record-of-processing.json",
        func=cmd_privacy_report,
        config=True,
        args=[arg("--json", action="store_true", help="print the report as JSON (shape above)")],
    )

    subject = arg(
        "--subject",
        required=True,
        metavar="REF",
        help="the resident's reference (resident id, user id or plate)",
    )
    add_command(
        group,
        "export",
        help="everything the gateway holds about one resident, as JSON lines (access and copy)",
        description="Every journal record that names the resident REF in an identifying\n"
        "field (resident, user, subject, plate) or, an alert or event about a personal or sensitive\n"
        "point, in its value (a rule's alert on a gate's last_plate), and every reading whose value\n"
        "is REF, sensitive ones opened with the site's keys, one JSON\n"
        "object per line (PIPL art. 45; on a site without privacy.master_key_file, as stored, in\n"
        "clear), then the sinks' dead letters of records naming REF\n"
        '({"type": "dead_letter", "sink": ..., "record": {...}}: a receiver refused them; one may\n'
        "outlive its journal record), then one line per snapshot sealed under REF's key\n"
        '({"type": "blob", "blob": ID, ...}: fetch it from GET /api/v1/blobs/ID as an admin).\n'
        "The export is written to the audit log. The gateway may run.",
        epilog="example:\n  edge privacy export -c site.yaml --subject R-1042 --out R-1042.jsonl",
        func=cmd_privacy_export,
        config=True,
        args=[
            subject,
            arg(
                "--out",
                metavar="FILE",
                help="write here instead of stdout: a new file, readable by its owner only (0600); "
                "an existing FILE is refused unless --force, and never one of the site's own files",
            ),
            FORCE,
        ],
    )
    add_command(
        group,
        "forget",
        help="erase one resident or plate: delete its data key so every sealed copy stops opening",
        description="Deletes the subject's data key (crypto-shredding, PIPL art. 47): its personal and\n"
        "sensitive records (a resident's measurements, a plate's passages) stop opening everywhere at\n"
        "once (journal, trend index, dead letters, and backups of those files taken before) and read\n"
        "as erased; the snapshot files sealed under its key are removed. Records that name it outside its key (a public event, an alert sealed under the\n"
        "site key) are counted and kept to their retention. A subject_erased event carrying only\n"
        "pseudonyms (the site's, and each recipient's own) is journaled by the gateway (within seconds\n"
        "when it runs, else at its next start). Written to the audit log. Cannot be undone. A site\n"
        "without privacy.master_key_file keeps its records in clear: there is no key to delete and\n"
        "nothing is erased (exit 1, saying how many records name REF and how to set a key).",
        epilog="example:\n  edge privacy forget -c site.yaml --subject R-1042",
        func=cmd_privacy_forget,
        config=True,
        args=[subject],
    )
    add_command(
        group,
        "backup-keys",
        help="copy keys.db (the residents' data keys) to a file kept apart from the backups",
        description="Writes a consistent copy of the site's keys.db to FILE (0600), by SQLite's backup API:\n"
        "the gateway may run (a plain cp of keys.db beside a running gateway misses the keys still\n"
        "in keys.db-wal, and the records sealed under them never open again). `edge backup`\n"
        "leaves keys.db out on purpose, so that a forget reaches the archives too: without a\n"
        "copy of keys.db, the loss of the box loses every sealed record. Take one after each\n"
        "`edge backup` (a copy taken before misses the keys created in between, and the archive's\n"
        "records sealed under them never open), after every forget (an older copy still holds\n"
        "the forgotten key) and after rotate-key (a copy opens with the master key of its\n"
        "time). Keep it apart from the archives and from the master key: each is useless\n"
        "without the other. To restore, put it back as keys.db beside the journal before the\n"
        "gateway's first start. FILE is refused when it exists (unless --force) or is one of\n"
        "the site's own files. Written to the audit log.",
        epilog="example:\n  edge privacy backup-keys -c /etc/community-edge/site.yaml "
        "--out /mnt/keys-safe/keys-$(date +%F).db",
        func=cmd_privacy_backup_keys,
        config=True,
        args=[arg("--out", required=True, metavar="FILE", help="the copy to write (0600)"), FORCE],
    )
    add_command(
        group,
        "rotate-key",
        help="rewrap every resident's data key under a new master key (nothing else is rewritten)",
        description="Rewraps every data key in keys.db under the master key in NEW (created 0600 when it\n"
        "does not exist); the journal and the other files are not rewritten. Stop the gateway first\n"
        "(refused, changing nothing, while a process holds the site's journal or state DB open),\n"
        "then point privacy.master_key_file at NEW and start it: the old master key opens nothing\n"
        "after the rotation.",
        epilog="example:\n  edge privacy rotate-key -c site.yaml --new-key /etc/community-edge/master-2027.key",
        func=cmd_privacy_rotate,
        config=True,
        args=[arg("--new-key", required=True, metavar="NEW", help="the new master key file")],
    )
    add_command(
        group,
        "new-key",
        help="write a new random master key file (0600), never over an existing one",
        description="Writes a new random site master key (32 bytes, base64) to FILE, readable by its\n"
        "owner only; an existing file is never replaced. Name it in privacy.master_key_file.",
        epilog="example:\n  edge privacy new-key /etc/community-edge/master.key",
        func=cmd_privacy_new_key,
        args=[arg("file", metavar="FILE", help="where to write the key")],
    )


def _open_site_keys(
    args: argparse.Namespace, stopped: str = "", keyless: bool = False
) -> tuple[Any, Any] | None:
    """(site, sealer registered for its journal and state DB), or None after saying why.
    `stopped`: the command needs the gateway stopped (named in the refusal), checked before the
    key store is opened, as `edge restore` checks it. `keyless`: a site without a master key gives
    (site, None) instead of a refusal (its records are in clear)."""
    from edge.privacy.keyfile import KeyFileError
    from edge.privacy.keys import WrongMasterKey

    found = _site_and_key(args, stopped, keyless)
    if found is None:
        return None
    site, key_file = found
    if key_file is None:
        return site, None
    try:
        return site, _open_sealer(site, key_file)
    except (KeyFileError, WrongMasterKey) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _site_and_key(
    args: argparse.Namespace, stopped: str = "", keyless: bool = False
) -> tuple[Any, str | None] | None:
    """(site, its master key file) for `_open_site_keys`, or None after saying why; the key file
    is None only with `keyless`."""
    from edge.cli import load_or_report

    site = load_or_report(args.config)
    if site is None:
        return None
    if stopped and _gateway_running(site, stopped):
        return None
    key_file = site.privacy.master_key_file
    if key_file is None and not keyless:
        print(
            f"{args.config}: privacy.master_key_file is not set: nothing is sealed, no key to use",
            file=sys.stderr,
        )
        return None
    return site, key_file


def _open_sealer(site: Any, key_file: str) -> Any:
    """The site's sealer, registered for its journal and state DB. A keys.db missing or empty
    while the journal, the dead letters or the snapshots hold sealed data is refused
    (KeyStoreUnusable) before one is created: every privacy command that uses the keys comes this
    way. KeyFileError, WrongMasterKey as `Sealer.open` raises them."""
    from edge.privacy.atrest import Sealer, register

    sealer = Sealer.open(
        site.storage.path,
        key_file,
        state_path=site.storage.resolved_state_path(),
        blob_dir=site.storage.resolved_blob_dir(),
    )
    register(site.storage.path, sealer)
    register(site.storage.resolved_state_path(), sealer)
    return sealer


def _gateway_running(site: Any, command: str) -> bool:
    """True, after saying so, when a process holds the site's journal or state DB open (the
    gateway, or another edge command), or when that cannot be told."""
    from edge.backup import BackupError, Targets, running_holder

    try:
        holder = running_holder(Targets.of(site))
    except BackupError as exc:
        print(f"error: {exc}; nothing was changed", file=sys.stderr)
        return True
    if holder is None:
        return False
    print(
        f"error: {holder[0]} is open in process {holder[1]} (the gateway, or another edge command): "
        f"stop the service first (systemctl stop community-edge), then {command}; nothing was changed",
        file=sys.stderr,
    )
    return True


def _out_refused(site: Any, out: str, force: bool) -> str | None:
    """Why `--out FILE` is refused, None when it may be written: one of the site's own files (the
    journal, state DB, keys, site file, master key, links to them followed: `edge backup --out`'s
    guard), a directory, or an existing file without `force`. Checked before anything is read."""
    from edge.backup import refuse_own_file

    path = Path(out).absolute()
    refused = refuse_own_file(site, out)
    if refused:
        return refused
    if path.is_dir():
        return f"error: {out}: Is a directory; --out names the file to write; nothing was written"
    if not force and (path.exists() or path.is_symlink()):
        return f"error: {out}: exists; name a new file, or give --force to replace it; nothing was written"
    return None


@contextlib.contextmanager
def _private_out(path: Path, force: bool) -> Iterator[IO[str]]:
    """A text file for `path`: written to a new file created 0600 beside it, then put in its place
    (`_place`), so a failure leaves no part-written copy and an existing file's mode is not kept."""
    fd, tmp = _new_private_file(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        _place(Path(tmp), path, force)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_private_file(path: Path) -> tuple[int, str]:
    """(fd, name) of a new file beside `path`, created 0600 with O_EXCL (`mkstemp`)."""
    try:
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.absolute().parent)
    except OSError as exc:  # said of the file asked for, not of the temporary name
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _place(tmp: Path, path: Path, force: bool) -> None:
    """Move the finished `tmp` to `path`: with `force` by rename (a link at `path` is replaced, not
    followed); without it by a hard link that fails if `path` appeared meanwhile, so a file
    created since the check is still not replaced."""
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(
            errno.EEXIST, "created meanwhile; name a new file, or give --force to replace it", str(path)
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _subject(args: argparse.Namespace) -> str | None:
    from edge.privacy.subjects import check_subject

    try:
        return check_subject(args.subject)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_privacy_export(args: argparse.Namespace) -> int:
    from edge import audit
    from edge.privacy import subjects
    from edge.state import StateDB

    subject = _subject(args)
    # a site without a master key holds its records in clear: they are exported as they are
    opened = _open_site_keys(args, keyless=True) if subject is not None else None
    if subject is None or opened is None:
        return 1
    site, sealer = opened
    refused = _out_refused(site, args.out, args.force) if args.out else None
    if refused is not None or not Path(site.storage.path).exists():
        print(refused or f"{site.storage.path}: no journal yet (has the site run?)", file=sys.stderr)
        if sealer is not None:
            sealer.close()
        return 1
    state = StateDB(site.storage.resolved_state_path(), journal=site.storage.path)
    try:
        blob_dir = site.storage.resolved_blob_dir()
        beside = subjects.copies(site, state, subject)
        private = subjects.private_points(site)
        if args.out:
            with _private_out(Path(args.out), args.force) as out:
                done = subjects.export(site.storage.path, subject, out, blob_dir, sealer, beside, private)
        else:
            done = subjects.export(site.storage.path, subject, sys.stdout, blob_dir, sealer, beside, private)
        pseudonym = subjects.audit_pseudonym(state, sealer, subject)
        audit.record(
            state,
            "cli",
            "privacy_export",
            pseudonym,
            records=done.records,
            copies=done.copies,
            snapshots=done.snapshots,
            # the audit log is kept for good: a file named after the resident would outlive a forget
            out="file" if args.out else "stdout",
        )
    finally:
        state.close()
        if sealer is not None:
            sealer.close()
    print(
        f"{fmt.count(done.records, 'record')}, {fmt.count(done.copies, 'dead letter')} and "
        f"{fmt.count(done.snapshots, 'sealed snapshot')} (blob ids) of subject {pseudonym} exported"
        + ("" if sealer is not None else " (no privacy.master_key_file: read as stored, in clear)"),
        file=sys.stderr,
    )
    return 0


def cmd_privacy_forget(args: argparse.Namespace) -> int:
    from edge.privacy import subjects
    from edge.privacy.keyfile import KeyFileError
    from edge.state import StateDB

    subject = _subject(args)
    opened = _open_site_keys(args, keyless=True) if subject is not None else None
    if subject is None or opened is None:
        return 1
    site, sealer = opened
    if sealer is None:
        # a refusal changes nothing: a site that never ran gets no state DB from it
        path = site.storage.resolved_state_path()
        state = StateDB(path, journal=site.storage.path) if Path(path).exists() else None
        try:
            kept = subjects.kept_without_key(site, state, subject)
        finally:
            if state is not None:
                state.close()
        print(f"{args.config}: {subjects.forget_refused_without_key(kept)}", file=sys.stderr)
        return 1
    state = StateDB(site.storage.resolved_state_path(), journal=site.storage.path)
    try:
        try:
            # audited by the forget itself: its entry is queued with the erasure, before the key goes
            done = subjects.forget(site, sealer, state, subject, actor="cli")
        except KeyFileError as exc:
            print(f"error: {exc}; nothing was erased", file=sys.stderr)
            return 1
        except subjects.ErasureUnfinished as exc:
            raise PartlyDone(str(exc)) from exc
    finally:
        state.close()
        _close_after_commit(sealer)
    print(
        f"subject {done.subject_pseudonym}: "
        + (
            "data key deleted; its sealed records no longer open anywhere"
            + f", {fmt.count(done.snapshots_removed, 'sealed snapshot')} removed"
            if done.had_key
            else "held no data key"
        )
        + f"; {fmt.count(done.kept_in_clear, 'record')} "
        + ("names" if done.kept_in_clear == 1 else "name")
        + " it outside its key (in clear, or sealed under"
        " another key) and stay until their retention;"
        " the subject_erased event is journaled by the gateway"
    )
    return 0


def _rotated_anyway(path: str, new: bytes, exc: sqlite3.OperationalError) -> int:
    """The number of data keys, when `new` opens keys.db although the rotation raised `exc` (its
    commit went through, the WAL's truncation after it failed); else `exc` again: nothing was
    rotated."""
    from edge.privacy.keys import SubjectKeys

    try:
        keys = SubjectKeys(path, new)
    except Exception:
        raise exc from None
    try:
        n = keys.subjects_count()
    finally:
        with contextlib.suppress(sqlite3.Error):
            keys.close()
    print(f"warning: {path}: rewrapped, then {exc}", file=sys.stderr)
    return n


def _close_after_commit(sealer: Any) -> None:
    """Close the sealer once the command's change is committed: a failure now (keys.db's WAL not
    truncated) changes nothing of what was done, and is said as a warning."""
    try:
        sealer.close()
    except sqlite3.Error as exc:
        print(
            f"warning: {sealer.keys.path}: {exc}: its WAL was not truncated, so the old bytes of a "
            "deleted or rewrapped key may stay in the file until the next forget, rotation or start",
            file=sys.stderr,
        )


def cmd_privacy_backup_keys(args: argparse.Namespace) -> int:
    from edge import audit
    from edge.cli import load_or_report
    from edge.privacy.atrest import keys_path
    from edge.state import StateDB

    site = load_or_report(args.config)
    if site is None:
        return 1
    refused = _out_refused(site, args.out, args.force)
    keys = Path(keys_path(site.storage.path))
    if refused is None and site.privacy.master_key_file is None:
        refused = (
            f"{args.config}: privacy.master_key_file is not set: nothing is sealed, there are no keys to copy"
        )
    elif refused is None and not keys.exists():
        refused = (
            f"{keys}: no data keys yet (has the site run with privacy.master_key_file?); nothing was written"
        )
    if refused is not None:
        print(refused, file=sys.stderr)
        return 1
    # the keys must open with the site's master key: a copy of a store it cannot open is no backup
    opened = _open_site_keys(args)
    if opened is None:
        return 1
    _, sealer = opened
    try:
        out = Path(args.out)
        copied = _copy_keys(keys, out, args.force)
    finally:
        sealer.close()
    state = StateDB(site.storage.resolved_state_path(), journal=site.storage.path)
    try:
        audit.record(state, "cli", "privacy_backup_keys", str(out.absolute()), subject_keys=copied)
    finally:
        state.close()
    print(
        f"{copied} data keys copied to {args.out} (0600); keep it apart from the backup archives and "
        "from the master key, and take a new copy after every forget: an older one still holds the "
        "forgotten key"
    )
    return 0


def _copy_keys(keys: Path, out: Path, force: bool) -> int:
    """Copy keys.db to `out` by SQLite's backup API (one read snapshot, the WAL's keys included),
    as one self-contained file (rollback journal, no -wal beside it); checked, then put in place
    (`_place`). Returns the number of data keys in the copy."""
    fd, tmp = _new_private_file(out)
    os.close(fd)
    try:
        source = sqlite3.connect(sqlite_uri(keys), uri=True, timeout=30)
        try:
            copy = sqlite3.connect(tmp, isolation_level=None)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")
                check = copy.execute("PRAGMA integrity_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"the copy fails its integrity check: {check}")
                n = int(copy.execute("SELECT count(*) FROM subject_keys").fetchone()[0])
            finally:
                copy.close()
        finally:
            source.close()
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        _place(Path(tmp), out, force)
    except BaseException:
        for leftover in (tmp, f"{tmp}-journal"):
            Path(leftover).unlink(missing_ok=True)
        raise
    return n


def cmd_privacy_rotate(args: argparse.Namespace) -> int:
    from edge import audit
    from edge.privacy.keyfile import KeyFileError, create_master_key, load_master_key
    from edge.privacy.keys import KeyStoreUnusable, WrongMasterKey
    from edge.state import StateDB

    # a running gateway seals with the master key it started with: rotated under it, its journal
    # writer could seal nothing more (and would report itself failing until restarted)
    found = _site_and_key(args, stopped="rotate the key")
    if found is None:
        return 1
    site, key_file = found
    assert key_file is not None  # not keyless: a site without one was refused
    try:
        sealer = _open_sealer(site, key_file)
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except WrongMasterKey as exc:
        if not isinstance(exc, KeyStoreUnusable) and _rotated_before(site, args.new_key):
            print(
                f"keys.db was already rotated to {args.new_key} (it opens with that key, not with "
                f"{key_file}): set privacy.master_key_file: {args.new_key} before the next start; "
                "nothing was changed"
            )
            return 0
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        try:
            if not Path(args.new_key).exists():
                create_master_key(args.new_key)
            new = load_master_key(args.new_key)
        except KeyFileError as exc:
            print(f"error: {exc}; nothing was rotated", file=sys.stderr)
            return 1
        try:
            n = sealer.keys.rotate_master(new)
        except sqlite3.OperationalError as exc:
            n = _rotated_anyway(sealer.keys.path, new, exc)  # committed, then the WAL's truncation failed
    finally:
        _close_after_commit(sealer)
    state = StateDB(site.storage.resolved_state_path(), journal=site.storage.path)
    try:
        audit.record(state, "cli", "privacy_rotate_key", args.new_key, subject_keys=n)
    finally:
        state.close()
    print(
        f"{n} data keys rewrapped under {args.new_key}; set privacy.master_key_file: {args.new_key} "
        "before the next start (the old master key no longer opens keys.db)"
    )
    return 0


def _rotated_before(site: Any, new_key: str) -> bool:
    """Whether keys.db opens with the master key in `new_key`: a rotation to it that committed
    (the command re-run after it, the site file still naming the old key). False when that key
    cannot be read or keys.db cannot be opened."""
    from edge.privacy.atrest import keys_path
    from edge.privacy.keyfile import KeyFileError, load_master_key
    from edge.privacy.keys import KeyStoreUnusable, opens_with

    if not Path(new_key).exists():
        return False
    try:
        return opens_with(keys_path(site.storage.path), load_master_key(new_key))
    except (KeyFileError, KeyStoreUnusable):
        return False


def cmd_privacy_new_key(args: argparse.Namespace) -> int:
    from edge.privacy.keyfile import KeyFileError, create_master_key

    try:
        create_master_key(args.file)
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: new master key (0600); name it in privacy.master_key_file")
    return 0


def cmd_privacy_report(args: argparse.Namespace) -> int:
    from edge.cli import load_or_report
    from edge.privacy.report import build, render_text

    site = load_or_report(args.config)
    if site is None:
        return 1
    report = build(site)
    if args.json:
        json.dump(report.as_dict(), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(report))
    return 0
