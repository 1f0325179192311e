"""A resident's rights over what the gateway holds: a copy of it (PIPL art. 45) and its erasure
(art. 47), by the resident's reference (the `resident`/`user` id a kiosk records, or a plate).

- `export`: every journal record that names the subject in an identifying field, a reading
  whose value is the reference (a gate's `last_plate`), or an event about a personal or sensitive
  point whose `value` is (a rule's alert on `last_plate`), and every event sealed under the
  subject's data key though it names them in no field (a rule's alert, `rule_error` or
  `rule_action_failed` that their record fired), sealed ones opened with the site's keys,
  as JSON lines, then one line per snapshot file sealed under the subject's key (a sensitive
  camera's picture of the resident, or on a site with a master key a personal camera's picture a
  rule took for the subject, e.g. a plate: its blob id and class, to fetch from
  `GET /api/v1/blobs/{id}`).
- `forget`: deletes the subject's data key (`edge.privacy.keys`), so every sealed copy of its
  personal and sensitive records, in the journal, the trend index, dead letters and any backup of
  them, stops opening at once; records that still name it once the key is gone (a public
  event naming it, a record sealed under another subject's key or, journaled by an older version,
  an alert on `last_plate` sealed under the site key), and a user's alert acknowledgements the
  state DB still keeps in clear (stored before the key was set, until a start with it seals them),
  are counted, not rewritten: they leave at their class's retention. The snapshot files sealed
  under the key are removed as well (a copy of them taken before stays unreadable). An erasure notice is queued in the state DB and the
  gateway journals it as a `subject_erased` event: the subject's local pseudonym and, per
  recipient with a pseudonym key, that recipient's own pseudonym, keyed by a fingerprint of the
  key so a recipient receives only its own (`edge.privacy.pseudonym.RecordShaper`). The notice and
  the audit entry are queued before the key is deleted and released after, so an interrupted
  forget leaves either nothing done or an erasure that is audited and notified (`forget`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import orjson

from edge.paths import sqlite_uri
from edge.privacy.atrest import CAMERA_SUBJECT, SITE_SUBJECT, SUBJECT_FIELDS, Sealer
from edge.privacy.pseudonym import (
    KNOWN_FIELDS,
    canonical_text,
    key_fingerprint,
    load_pseudonym_key,
    pseudonym,
    value_names,
)
from edge.state import StateDB

if TYPE_CHECKING:
    from edge.config import Site

log = logging.getLogger("edge.privacy")

COMPONENT = "privacy"  # the erasure notices' owner in the state DB's migrations
MIGRATIONS = [
    """
    CREATE TABLE privacy_erasures (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        payload TEXT NOT NULL,      -- the subject_erased event's payload (pseudonyms only)
        journaled REAL              -- when the gateway journaled it; NULL until then
    );
    """,
    # on a site without a master key there is no keys.db: the audit log names a subject by an
    # HMAC under this random secret instead (`audit_pseudonym`)
    """
    CREATE TABLE privacy_audit_secret (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        secret BLOB NOT NULL
    );
    """,
    # an erasure is queued before its key is deleted (`forget`): until it is settled, `kid` names
    # the key it deletes and `audit` the entry to write once that key is gone
    """
    ALTER TABLE privacy_erasures ADD COLUMN kid BLOB;
    ALTER TABLE privacy_erasures ADD COLUMN audit TEXT;
    """,
]
FORGET_LOCK_SUFFIX = "-forget-lock"  # beside keys.db: held while a forget runs (`_erasing`)
IDENTIFYING = frozenset(SUBJECT_FIELDS) | KNOWN_FIELDS  # fields whose value names a person
PAGE = 5000
INT64_MAX = (1 << 63) - 1


def check_subject(subject: str) -> str:
    """A subject reference as given on the command line; ValueError naming what is accepted."""
    ref = subject.strip() if isinstance(subject, str) else ""
    if not ref:
        raise ValueError("--subject: give the resident's reference (a resident id, user id or plate)")
    if ref == SITE_SUBJECT or ref.startswith(CAMERA_SUBJECT):
        raise ValueError(f"--subject {ref}: that is one of the site's own keys, not a resident")
    return ref


def private_points(site: Site) -> frozenset[str]:
    """The site's personal and sensitive points: an event about one names its subject by its
    `value` (`edge.privacy.pseudonym.value_names`)."""
    from edge.model import Privacy

    return frozenset(p.id for p in site.point_infos() if p.privacy != Privacy.PUBLIC)


def names_subject(payload: Any, subject: str, private: Container[str] = ()) -> bool:
    """An identifying field of `payload` (at its top level) holds `subject`, or its `value` does
    and it is about one of the `private` points (an alert on a gate's `last_plate`)."""
    if not isinstance(payload, dict):
        return False
    if value_names(payload, private) == subject:
        return True
    return any(
        k in IDENTIFYING and v is not None and canonical_text(v) == subject for k, v in payload.items()
    )


def record_names_subject(rec: Any, subject: str, private: Container[str] = ()) -> bool:
    """A record in the pull-API shape names `subject`: an event in an identifying field of its
    payload or by its value (`names_subject`), a reading by its value."""
    if not isinstance(rec, dict):
        return False
    if rec.get("type") == "event":
        return names_subject(rec.get("payload"), subject, private)
    value = rec.get("value")
    return isinstance(value, str) and value == subject


def _private_of(journal_path: str, private: Container[str] | None) -> Container[str]:
    """`private`, else the personal and sensitive points known to the sealer of the journal (a
    running gateway's: its hub's), else none."""
    if private is not None:
        return private
    from edge.store.rows import sealer_for

    sealer = sealer_for(journal_path)
    return sealer.private_points() if isinstance(sealer, Sealer) else frozenset()


# ---------------------------------------------------------------- export
def journal_records(
    journal_path: str,
    subject: str,
    private: Container[str] | None = None,
    upto: int | None = None,
    keyed: bool = True,
) -> Iterator[dict[str, Any]]:
    """The journal's records that name `subject` (events in an identifying field or, about one of
    the `private` points, by their value; readings by their value), and with `keyed` the events
    sealed under its data key though no field names it (what a rule's firing on its record left:
    an alert, a `rule_error`, a `rule_action_failed`, `edge.privacy.payload.SubjectPayload`),
    oldest first (sealed ones as they came, when this process holds the keys). `private`: the
    site's personal and sensitive points (`private_points`); None: those the journal's sealer
    knows. `upto`: no record after that seq. A page of rows at a time, as stored, opened after
    their envelope's key is read."""
    import sqlite3

    from edge.store.reader import READER_CACHE_KIB, ROWS_SQL
    from edge.store.rows import connect, open_rows, row_to_record

    private = _private_of(journal_path, private)
    kid = _subject_kid(journal_path, subject) if keyed else None
    conn = connect(journal_path)
    try:
        conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")  # rows read once, not kept
        cur = conn.cursor(sqlite3.Cursor)  # the rows as stored: an envelope says whose key sealed it
        after = 0
        while True:
            stored = cur.execute(ROWS_SQL, (after, PAGE)).fetchall()
            if not stored:
                return
            after = stored[-1][0]
            rows = open_rows(journal_path, cur.description, stored)
            for raw, row in zip(stored, rows, strict=True):
                if upto is not None and row[0] > upto:
                    return
                if row[5] is None:
                    if row[3] == subject:
                        yield row_to_record(row)
                    continue
                rec = row_to_record(row)
                if names_subject(rec["payload"], subject, private) or (
                    kid is not None and _sealed_under(raw[7], kid)
                ):
                    yield rec
    finally:
        conn.close()


def _subject_kid(journal_path: str, subject: str) -> bytes | None:
    """The reference of `subject`'s data key in the keys of the journal's sealer (a running
    gateway's, or the one a command opened), None without a key or a sealer."""
    from edge.store.rows import sealer_for

    sealer = sealer_for(journal_path)
    return sealer.keys.kid_of(subject) if isinstance(sealer, Sealer) else None


def _sealed_under(stored: Any, kid: bytes) -> bool:
    """A stored payload is an envelope sealed under the key `kid`."""
    from edge.privacy.keys import envelope_kid

    return type(stored) is bytes and envelope_kid(stored) == kid


def subject_snapshots(blob_dir: str, sealer: Sealer, subject: str) -> list[dict[str, Any]]:
    """The snapshot files sealed under `subject`'s key, sensitive and personal, oldest first:
    `{"type": "blob", "blob": id, "source": camera, "ts": stored, "privacy": class}`."""
    from edge.privacy.keys import envelope_kid
    from edge.store.blobs import BlobStore, is_sensitive

    kid = sealer.keys.kid_of(subject)
    if kid is None:
        return []
    found = []
    for path, head in BlobStore(blob_dir).sealed_heads():
        if envelope_kid(head) == kid:
            try:
                ts = path.stat().st_mtime
            except FileNotFoundError:
                continue
            blob = path.name.split(".", 1)[0]
            cls = "sensitive" if is_sensitive(path.name) else "personal"
            found.append({"type": "blob", "blob": blob, "source": path.parent.name, "ts": ts, "privacy": cls})
    found.sort(key=lambda b: (b["ts"], b["blob"]))
    return found


def copies(site: Site, state: StateDB, subject: str) -> Iterator[dict[str, Any]]:
    """The copies of records naming `subject` that features keep beside the journal (a sink's
    dead letters: records a receiver refused, kept to their class's retention from when they were
    refused, so one may outlive its journal record), as each feature's `subject_records` gives
    them."""
    from edge.plugins import registry

    for plugin in registry().plugins:
        if plugin.subject_records is not None and not plugin.missing():
            yield from plugin.subject_records(site, state, subject)


def recipient_keys(site: Site, consumers: bool = True) -> Iterator[tuple[str, bytes | None]]:
    """(id, pseudonym key or None) of every upstream sink and (with `consumers`) pull consumer."""
    recipients: list[tuple[str, Any]] = [(f"upstream {s.id}", s) for s in site.upstream]
    if consumers:
        recipients += [(f"consumer {c.id}", c) for c in site.consumers]
    for what, recipient in recipients:
        cfg = getattr(recipient, "pseudonymise", None)
        key = None if cfg is None else load_pseudonym_key(cfg.key_file, cfg.key_env, f"{what} pseudonymise")
        yield recipient.id, key


def names_by_sink(site: Site, subject: str) -> dict[str, frozenset[str]]:
    """Per upstream sink, what names `subject` in what it was sent: the reference, and its
    pseudonym under the sink's key when it has one (a record kept as it was to be sent, a dead
    letter, carries that)."""
    return {
        sink: frozenset([subject] if key is None else [subject, pseudonym(key, subject)])
        for sink, key in recipient_keys(site, consumers=False)
    }


@dataclass(frozen=True)
class Exported:
    records: int  # journal records
    copies: int  # copies kept beside the journal (dead letters)
    snapshots: int  # sealed snapshot files (blob ids)


def export(
    journal_path: str,
    subject: str,
    out: IO[str],
    blob_dir: str | None = None,
    sealer: Sealer | None = None,
    beside: Iterable[dict[str, Any]] = (),
    private: Container[str] | None = None,
) -> Exported:
    """Write every journal record held about `subject` to `out` as JSON lines (`journal_records`,
    `private` as there), then the copies kept `beside` the journal (`copies`), then (with
    `blob_dir` and `sealer`) its sealed snapshot files."""
    n = 0
    for rec in journal_records(journal_path, subject, private):
        out.write(orjson.dumps(rec, default=str).decode() + "\n")
        n += 1
    kept = 0
    for copy in beside:
        out.write(orjson.dumps(copy, default=str).decode() + "\n")
        kept += 1
    snapshots = subject_snapshots(blob_dir, sealer, subject) if blob_dir and sealer else []
    for line in snapshots:
        out.write(orjson.dumps(line).decode() + "\n")
    return Exported(n, kept, len(snapshots))


def newest_seq(journal_path: str) -> int:
    """The journal's newest seq now (0: it holds nothing)."""
    from edge.store.reader import JournalReader

    reader = JournalReader(journal_path)
    try:
        last = reader.last_at_or_before(INT64_MAX)
    finally:
        reader.close()
    return 0 if last is None else last[0]


def count_in_clear(
    journal_path: str, subject: str, private: Container[str] | None = None, upto: int | None = None
) -> int:
    """Records that still name `subject` once its data key is deleted: what forgetting the key
    did not reach. Those sealed under its key read as erased by then; what is left are records in
    clear (a public event or reading naming it) and private ones sealed under another subject's
    key (a measurement whose `resident` comes before the plate, an alert journaled before its
    value was taken as its subject). Counted after the deletion, so that the count is the key's
    own answer, not a guess at which key each record was sealed under. `upto`: the newest seq
    when the key was deleted: a running gateway seals what it sees after that under a new key,
    which is not left behind by the forget but new."""
    return sum(1 for _ in journal_records(journal_path, subject, private, upto, keyed=False))


def clear_acks(state: StateDB, subject: str) -> int:
    """The alert acknowledgements of user `subject` the state DB keeps in clear (`ui_acks`, stored
    before the site had a master key and not yet sealed by a start with it): forgetting the key
    does not reach them. 0 where the UI never stored one."""
    import sqlite3

    with state.lock:
        try:
            row = state.conn.execute(
                "SELECT count(*) FROM ui_acks WHERE sealed IS NULL AND user = ?", (subject,)
            ).fetchone()
        except sqlite3.OperationalError:  # no ui_acks table (or none of its sealed column yet)
            try:
                row = state.conn.execute("SELECT count(*) FROM ui_acks WHERE user = ?", (subject,)).fetchone()
            except sqlite3.OperationalError:
                return 0
    return int(row[0])


def audit_pseudonym(state: StateDB, sealer: Sealer | None, subject: str) -> str:
    """How the audit log names `subject`: the site's own pseudonym (`SubjectKeys.local_pseudonym`)
    where the site has a master key; without one, an HMAC under a random secret the state DB keeps
    for this (created at the first use), so an export of a site in clear is audited without the
    reference too. The two differ: a subject audited before the key was set is named otherwise
    after."""
    if sealer is not None:
        return sealer.keys.local_pseudonym(subject)
    import secrets

    state.migrate(COMPONENT, MIGRATIONS)
    with state.lock:
        state.conn.execute(
            "INSERT OR IGNORE INTO privacy_audit_secret(id, secret) VALUES (1, ?)", (secrets.token_bytes(32),)
        )
        secret = state.conn.execute("SELECT secret FROM privacy_audit_secret WHERE id = 1").fetchone()[0]
    return pseudonym(bytes(secret), subject)


# ---------------------------------------------------------------- forget
def kept_without_key(site: Site, state: StateDB | None, subject: str) -> int:
    """What names `subject` on a site without a master key, where a forget has no key to delete:
    journal records, dead letters and acknowledgements (None: no state DB yet), all in clear."""
    from pathlib import Path

    journal = site.storage.path
    held = count_in_clear(journal, subject, private_points(site)) if Path(journal).exists() else 0
    if state is not None:
        held += sum(1 for _ in copies(site, state, subject)) + clear_acks(state, subject)
    return held


def forget_refused_without_key(kept: int) -> str:
    """Why a forget erases nothing on a site without a master key, what stays, and what to do."""
    from edge import fmt

    return (
        "privacy.master_key_file is not set: this site keeps its records in clear, so there is no "
        f"data key to delete and nothing was erased ({fmt.count(kept, 'record')} naming the subject, "
        "each kept until its class's retention). "
        "To erase a resident or plate: set privacy.master_key_file (edge privacy new-key writes one) "
        "and restart the gateway, which seals the journal's personal and sensitive records under "
        "each one's key, then forget (dead letters and snapshot files stored in clear stay until "
        "their retention); see docs/privacy.md"
    )


@dataclass(frozen=True)
class Erasure:
    subject_pseudonym: str  # the site's own pseudonym of the subject
    had_key: bool  # a data key existed (sealed records of the subject may exist)
    #: records naming the subject outside its key (and its clear acknowledgements in the state
    #: DB), left to their retention
    kept_in_clear: int
    recipients: int  # recipients whose own pseudonym the notice carries
    snapshots_removed: int = 0  # snapshot files sealed under a forgotten key, deleted


def notice_payload(site: Site, sealer: Sealer, subject: str) -> dict[str, Any]:
    """The subject_erased payload: pseudonyms only, never the reference itself."""
    recipients = {
        key_fingerprint(key): pseudonym(key, subject) for _id, key in recipient_keys(site) if key is not None
    }
    return {"subject": sealer.keys.local_pseudonym(subject), "recipients": recipients}


class ErasureUnfinished(RuntimeError):
    """The subject's data key is deleted, but a later step failed: the message says what was done
    and what was not. The erasure is queued all the same: its audit entry and notice follow."""


def forget(
    site: Site, sealer: Sealer, state: StateDB, subject: str, actor: str | None = None, **detail: Any
) -> Erasure:
    """Delete `subject`'s data key and queue the subject_erased notice (see the module); with
    `actor`, also write its `privacy_forget` audit entry (`detail` added to it).

    The erasure is queued in the state DB, with its notice and audit entry, before the key goes,
    and settled after: a crash at any point leaves either the key in place (the queued erasure is
    dropped, nothing was done) or the key gone and the erasure queued, which the next forget, or
    the running gateway, settles (`settle_interrupted`): audited and notified, without the counts
    the command had not made yet. A failure after the key's deletion raises ErasureUnfinished."""
    with _erasing(sealer):
        settle_interrupted(state, sealer)
        payload = notice_payload(site, sealer, subject)  # before anything changes: a bad key stops here
        upto = newest_seq(site.storage.path)
        # a key created after this (a running gateway sealing something new) is not the forget's
        kid = sealer.keys.kid_of(subject)
        entry = {
            "actor": actor,
            "target": payload["subject"],
            "detail": {"had_key": kid is not None, **detail},
        }
        queued = None  # without a key nothing is deleted: queued and audited in one go at the end
        if kid is not None:
            queued = _queue(state, payload, kid, entry if actor is not None else None)
            _delete_key(sealer, subject, kid, state, queued)
        try:
            kept = count_in_clear(site.storage.path, subject, private_points(site), upto)
            kept += clear_acks(state, subject)
            removed = remove_forgotten_snapshots(site.storage.resolved_blob_dir(), sealer)
            payload["kept_in_clear"] = kept
            if actor is not None:
                entry["detail"].update(
                    kept_in_clear=kept, recipients=len(payload["recipients"]), snapshots_removed=removed
                )
            _settle(state, queued, payload, entry if actor is not None else None)
        except Exception as exc:
            if kid is None:
                raise
            raise ErasureUnfinished(
                f"the data key of subject {payload['subject']} is deleted: its sealed records no longer "
                f"open; then {exc}: the erasure is queued, and its audit entry and subject_erased "
                "notice are written by the running gateway (or at its next start, or by the next "
                "forget), without the count of records kept in clear"
            ) from exc
    return Erasure(payload["subject"], kid is not None, kept, len(payload["recipients"]), removed)


@contextlib.contextmanager
def _erasing(sealer: Sealer, wait: bool = True) -> Iterator[bool]:
    """Hold the site's forget lock (an exclusive `flock` on keys.db's path plus
    FORGET_LOCK_SUFFIX, released by the kernel when the process dies): one forget at a time, and
    no erasure is settled by another process while the forget that queued it still runs. Yields
    False, holding nothing, when `wait` is off and another process holds it."""
    path = sealer.keys.path + FORGET_LOCK_SUFFIX
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _own_like_folder(fd, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _own_like_folder(fd: int, path: str) -> None:
    """A lock file root created in a folder another user owns (the service's data dir) is given
    to that user, so the gateway can take the lock too."""
    if os.geteuid() != 0:
        return
    folder = os.stat(os.path.dirname(os.path.abspath(path)))
    if folder.st_uid != 0 and os.fstat(fd).st_uid == 0:
        os.fchown(fd, folder.st_uid, folder.st_gid)


def _queue(state: StateDB, payload: dict[str, Any], kid: bytes | None, entry: dict[str, Any] | None) -> int:
    """Queue the erasure, not to be journaled while `kid` (the key it deletes) is set."""
    state.migrate(COMPONENT, MIGRATIONS)
    with state.lock:
        if kid is not None:  # an earlier forget of this key that died before deleting it
            state.conn.execute("DELETE FROM privacy_erasures WHERE kid = ?", (kid,))
        cur = state.conn.execute(
            "INSERT INTO privacy_erasures(ts, payload, kid, audit) VALUES (?, ?, ?, ?)",
            (
                time.time(),
                orjson.dumps(payload).decode(),
                kid,
                None if entry is None else orjson.dumps(entry).decode(),
            ),
        )
    return int(cur.lastrowid or 0)


def _delete_key(sealer: Sealer, subject: str, kid: bytes, state: StateDB, queued: int) -> None:
    """Delete the key; an error leaves the queued erasure only where the key is gone anyway (an
    I/O error after the deletion committed, in the WAL's truncation)."""
    try:
        sealer.keys.forget(subject)
    except Exception as exc:
        if _key_gone(sealer, kid):
            log.warning("%s: the data key is deleted, but then: %s", sealer.keys.path, exc)
            return
        with contextlib.suppress(Exception):  # else the next forget or the gateway drops it
            with state.lock:
                state.conn.execute("DELETE FROM privacy_erasures WHERE id = ?", (queued,))
        raise


def _key_gone(sealer: Sealer, kid: bytes) -> bool:
    """The key `kid` is no longer in keys.db (read on a connection of its own: the store's may be
    in a failed state)."""
    import sqlite3

    conn = sqlite3.connect(sqlite_uri(sealer.keys.path), uri=True, timeout=30)
    try:
        return conn.execute("SELECT 1 FROM subject_keys WHERE kid = ?", (kid,)).fetchone() is None
    finally:
        conn.close()


def _settle(
    state: StateDB, queued: int | None, payload: dict[str, Any], entry: dict[str, Any] | None
) -> bool:
    """Mark the queued erasure (None: a new one) ready to journal, with `payload`, and write its
    audit entry, in one transaction; False (nothing written) when it was settled already."""
    from edge import audit

    state.migrate(COMPONENT, MIGRATIONS)
    audit.ensure(state)  # its migrations are transactions of their own
    text = orjson.dumps(payload).decode()
    with state.lock:
        state.conn.execute("BEGIN IMMEDIATE")
        try:
            if queued is None:
                state.conn.execute(
                    "INSERT INTO privacy_erasures(ts, payload) VALUES (?, ?)", (time.time(), text)
                )
                done = 1
            else:
                done = state.conn.execute(
                    "UPDATE privacy_erasures SET payload = ?, kid = NULL, audit = NULL "
                    "WHERE id = ? AND (kid IS NOT NULL OR audit IS NOT NULL)",
                    (text, queued),
                ).rowcount
            if done and entry is not None:
                audit.record(state, entry["actor"], "privacy_forget", entry["target"], **entry["detail"])
            state.conn.execute("COMMIT")
        except BaseException:
            if state.conn.in_transaction:
                state.conn.execute("ROLLBACK")
            raise
    return bool(done)


def settle_interrupted(state: StateDB, sealer: Sealer) -> int:
    """Settle the erasures a forget queued and did not settle (it died, or failed after the key's
    deletion): where the key is gone, the erasure is audited (`"interrupted": true`) and its notice
    made ready; where it is still there, nothing was done and the queued erasure is dropped. Call
    it holding the forget lock (`_erasing`). Returns how many were audited and notified."""
    state.migrate(COMPONENT, MIGRATIONS)
    with state.lock:
        rows = state.conn.execute(
            "SELECT id, payload, kid, audit FROM privacy_erasures WHERE kid IS NOT NULL OR audit IS NOT NULL"
        ).fetchall()
    settled = 0
    for queued, payload, kid, entry in rows:
        if kid is not None and not _key_gone(sealer, bytes(kid)):
            with state.lock:
                state.conn.execute("DELETE FROM privacy_erasures WHERE id = ?", (queued,))
            continue
        notice = orjson.loads(payload)
        audit_entry = orjson.loads(entry) if entry else None
        if audit_entry is not None:
            audit_entry["detail"].update(interrupted=True, recipients=len(notice.get("recipients") or {}))
        settled += _settle(state, queued, notice, audit_entry)
    if settled:
        log.warning("erasures interrupted after their key's deletion, audited and queued now: %d", settled)
    return settled


def remove_forgotten_snapshots(blob_dir: str, sealer: Sealer) -> int:
    """Delete every snapshot file sealed under a forgotten key (this subject's, and any an earlier
    forget left behind): they no longer open, and a file that stays still says when a picture
    was taken. Returns how many went."""
    from edge.privacy.keys import envelope_kid
    from edge.store.blobs import BlobStore

    forgotten = sealer.keys.forgotten_kids()
    if not forgotten:
        return 0
    return len(BlobStore(blob_dir).remove_sealed(lambda head: envelope_kid(head) in forgotten))


def pending_notices(state: StateDB) -> list[tuple[int, float, dict[str, Any]]]:
    """Erasure notices ready and not journaled yet: (id, when forgotten, payload). An erasure a
    forget queued and did not settle is settled first (`settle_interrupted`), with the sealer of
    this process for the state DB (a running gateway's), unless a forget runs now."""
    state.migrate(COMPONENT, MIGRATIONS)
    with state.lock:
        unsettled = state.conn.execute(
            "SELECT 1 FROM privacy_erasures WHERE kid IS NOT NULL OR audit IS NOT NULL LIMIT 1"
        ).fetchone()
    if unsettled is not None:
        from edge.store.rows import sealer_for

        sealer = sealer_for(state.path)
        try:
            if isinstance(sealer, Sealer):
                with _erasing(sealer, wait=False) as held:
                    if held:
                        settle_interrupted(state, sealer)
        except OSError as exc:  # the lock file: the erasures that are ready are journaled all the same
            log.warning("interrupted erasures not settled yet: %s", exc)
    with state.lock:
        rows = state.conn.execute(
            "SELECT id, ts, payload FROM privacy_erasures "
            "WHERE journaled IS NULL AND kid IS NULL AND audit IS NULL ORDER BY id"
        ).fetchall()
    return [(int(r[0]), float(r[1]), orjson.loads(r[2])) for r in rows]


def mark_journaled(state: StateDB, ids: list[int]) -> None:
    with state.lock:
        state.conn.executemany(
            "UPDATE privacy_erasures SET journaled = ? WHERE id = ?", [(time.time(), i) for i in ids]
        )
