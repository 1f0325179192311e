"""Personal and sensitive values sealed before they reach SQLite, opened again where rows are read.

What is sealed: the payload of every `personal` or `sensitive` event, the value of every reading
of a `sensitive` point and the string values of a `personal` point (a gate's `last_plate`), in
the journal (and, being copied as they are, in the trend index's events), a personal or
sensitive record a sink dead-lettered (state DB), an alert acknowledgement's user and comment in
the state DB (`ui_acks`), under the acknowledging user's key (acknowledgements stored in clear
before the key was set are sealed at the next start), and the image files of a sensitive camera
(`seal_blob`, through `edge.store.blobs`, which finds the sealer registered for its folder). Each
is an envelope of `edge.privacy.keys` under its subject's data key: the person named by the
payload's `resident`, `user`, `subject` or `plate` field (a plate is its own subject: forgetting
it shreds its passages), a string value itself (a `last_plate` reading, and an alert or event about a personal or sensitive point whose
`value` is such a string), the subject a `SubjectPayload` holds beside its fields (what a rule's
firing leaves, an alert, a `rule_error`, a `rule_action_failed`, is about whom the record that
fired it names), else the site-wide key `SITE_SUBJECT` (a sensitive point's numbers, an alert that
names nobody). A personal point's numbers are not sealed: they identify nobody on their own, and
keep their trend buckets.

The associated data binds an envelope to its row: the column, the record's time and its point
(an event's source), so an envelope copied onto another record does not open. The trend index
keeps the journal's (ts, source), so its copies open with the same associated data.

Rows are opened where they are fetched (`edge.store.rows.connect` gives every journal connection a
cursor that calls `open_rows`): sinks, the pull API, the UI and the CLI see the record as it came,
without a line of their own. A process that holds no key for the file (a tool run without the
master key) sees `SEALED_PAYLOAD` / a null value; a record whose subject was forgotten shows
`ERASED_PAYLOAD` / a null value: erased, not an error.

Each seal tells the key store when it happened (the record's own time, when it has one and it is
later), so that a key is deleted only once everything it sealed is past its retention
(`SubjectKeys.expire`, run by the privacy component with the journal's retention passes).

`Sealer`s are found by the path of the file they serve (`edge.store.rows.register`), so a reader
opened anywhere in the process (a sink's own connection, the trend follower) opens what the
writer sealed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Container, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from edge.privacy.payload import SITE_SUBJECT, SubjectPayload
from edge.privacy.pseudonym import value_names
from edge.store.blobs import CAMERA_KEY
from edge.store.reader import SEALED_ROW_SQL, stored_event_at
from edge.store.rows import register, sealer_for, unregister

if TYPE_CHECKING:  # `cryptography` loads only where something is sealed or opened
    from edge.privacy.keys import SubjectKeys

__all__ = [
    "CAMERA_SUBJECT",
    "SITE_SUBJECT",
    "SUBJECT_FIELDS",
    "Sealer",
    "SubjectPayload",
    "check_key_store",
    "key_store_problem",
    "keys_path",
    "register",
    "sealed_data",
    "sealer_for",
    "subject_of",
    "unregister",
]

CAMERA_SUBJECT = CAMERA_KEY  # + a camera id: the key of its sealed snapshots that name no resident
SUBJECT_FIELDS = ("resident", "user", "subject", "plate")  # payload fields naming the record's subject


def keys_path(journal_path: str | os.PathLike[str]) -> str:
    """The data keys: `keys.db` beside the journal."""
    return str(Path(journal_path).with_name("keys.db"))


def _read_only_uri(path: str | os.PathLike[str]) -> str:
    """A URI opening `path` read-only. Without a WAL (nobody has the file open) as immutable:
    SQLite then creates no -wal or -shm, which a root command (`edge doctor`) would leave root's,
    for the gateway to fail on."""
    wal = Path(f"{path}-wal")
    immutable = "" if wal.exists() and wal.stat().st_size > 0 else "&immutable=1"
    return f"{Path(path).resolve().as_uri()}?mode=ro{immutable}"


def sealed_data(
    journal_path: str | os.PathLike[str],
    state_path: str | os.PathLike[str] | None = None,
    blob_dir: str | os.PathLike[str] | None = None,
) -> str | None:
    """What the site holds sealed under its data keys, said for a person ("edge.db holds sealed
    records"), None when nothing: a sealed record in the journal, a sealed dead letter or MQTT
    command answer in the state DB, a sealed snapshot file. Read-only; a file that does not exist holds nothing, one
    that cannot be read is said to hold sealed data (it may)."""
    import sqlite3

    from edge.store.blobs import PERSONAL_SEALED_SUFFIX, SEALED_SUFFIX

    checks = [(journal_path, SEALED_ROW_SQL, "sealed records")]
    if state_path is not None:
        checks.append(
            (
                state_path,
                "SELECT 1 FROM sync_dead_letters WHERE typeof(record) = 'blob' LIMIT 1",
                "sealed dead letters",
            )
        )
        # an MQTT command's kept answer about a personal or sensitive point (`edge.mqtt.seen`):
        # no table on a site without MQTT commands, no column where they predate sealing
        checks.append(
            (
                state_path,
                "SELECT 1 FROM mqtt_requests WHERE sealed IS NOT NULL LIMIT 1",
                "sealed MQTT command answers",
            )
        )
    for path, sql, what in checks:
        if not Path(path).is_file() or Path(path).stat().st_size == 0:
            continue
        try:
            conn = sqlite3.connect(_read_only_uri(path), uri=True, timeout=10)
        except sqlite3.Error:
            return f"{path} (unreadable) may hold {what}"
        try:
            if conn.execute(sql).fetchone() is not None:
                return f"{path} holds {what}"
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc) and "no such column" not in str(exc):
                return f"{path} (unreadable: {exc}) may hold {what}"
        except sqlite3.DatabaseError as exc:
            return f"{path} (unreadable: {exc}) may hold {what}"
        finally:
            conn.close()
    if blob_dir is not None and Path(blob_dir).is_dir():
        for _ in Path(blob_dir).glob(f"*/*{SEALED_SUFFIX}"):
            return f"{blob_dir} holds sealed snapshots"
        for _ in Path(blob_dir).glob(f"*/*{PERSONAL_SEALED_SUFFIX}"):
            return f"{blob_dir} holds sealed snapshots"
    return None


def check_key_store(
    journal_path: str | os.PathLike[str],
    state_path: str | os.PathLike[str] | None = None,
    blob_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse (`edge.privacy.keys.KeyStoreUnusable`, naming keys.db and what to do) when the site's
    keys.db is missing or empty while something is sealed under the keys it held (`sealed_data`):
    a new key store would open none of it, and a forget run on it would delete nothing. Without
    sealed data (a first start) it is fine: the key store is created at its first open. Changes
    nothing; `Sealer.open` runs it too."""
    from edge.privacy.keys import KeyStoreUnusable, missing_message

    path = keys_path(journal_path)
    try:
        absent = Path(path).stat().st_size == 0
    except FileNotFoundError:
        absent = True
    if absent:
        found = sealed_data(journal_path, state_path, blob_dir)
        if found is not None:
            raise KeyStoreUnusable(missing_message(path, found))


def key_store_problem(
    journal_path: str | os.PathLike[str],
    master_key: bytes,
    state_path: str | os.PathLike[str] | None = None,
    blob_dir: str | os.PathLike[str] | None = None,
) -> str | None:
    """What stops the site's keys.db from opening with `master_key`, said for a person (naming the
    file and what to do), None when it opens, or when there is none yet and nothing is sealed (a
    first start creates it). Read-only: `edge doctor` and `edge check` ask it before a start
    would fail."""
    from edge.privacy.keys import KeyStoreUnusable, opens_with
    from edge.state import other_journal

    path = keys_path(journal_path)
    try:
        check_key_store(journal_path, state_path, blob_dir)
        if not Path(path).is_file() or Path(path).stat().st_size == 0:
            return None  # nothing sealed: created at the first start
        other = other_journal(path, journal_path)
        if other is not None:
            return (
                f"{path} holds the data keys of the journal {other} beside it, not of "
                f"{Path(journal_path).name}: give each site a folder of its own (storage.path)"
            )
        if opens_with(path, master_key):
            return None
    except KeyStoreUnusable as exc:
        return str(exc)
    return (
        f"{path}: this master key does not open the key store (it was written, or last rotated, "
        "under another master key): name in privacy.master_key_file the key keys.db was last "
        "rotated to, or put back the keys.db of this master key"
    )


def subject_of(payload: Any, private_points: Container[str] = ()) -> str:
    """The subject a sealed payload belongs to: its resident's reference or plate, else the string
    `value` of an event about one of `private_points` (the site's personal and sensitive points: a
    rule's alert on a gate's `last_plate` is the plate's, `edge.privacy.pseudonym.value_names`),
    else the subject a `SubjectPayload` holds (the record's that fired a rule), else the site."""
    if isinstance(payload, dict):
        for name in SUBJECT_FIELDS:
            value = payload.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
        named = value_names(payload, private_points)
        if named is not None:
            return named
        if type(payload) is SubjectPayload and payload.subject:
            return payload.subject
    return SITE_SUBJECT


def value_subject(value: Any) -> str:
    """The subject of a sealed reading: a string value names itself (a plate), else the site."""
    return value if type(value) is str and value else SITE_SUBJECT


def record_subject(record: Mapping[str, Any], private_points: Container[str] = ()) -> str:
    """The subject of a record in the pull-API shape, as the journal seals it: an event's by its
    payload (`subject_of`), a reading's by its value."""
    if record.get("type") == "event":
        return subject_of(record.get("payload"), private_points)
    return value_subject(record.get("value"))


def aad(column: str, ts: float, source: str) -> bytes:
    """The associated data binding an envelope to its row's column, time and point."""
    return f"{column}\x00{float(ts)!r}\x00{source}".encode()


class Sealer:
    """Seals and opens sensitive values with `keys`. Thread-safe (SubjectKeys is)."""

    def __init__(self, keys: SubjectKeys, journal_path: str | None = None) -> None:
        self.keys = keys
        # the journal whose records this sealer seals (`open`): a dead letter of one of its events
        # is sealed under the key its row was (`seal_record`)
        self.journal_path = journal_path
        self.sealed = 0  # values sealed since open (for status)
        # the journal's classes (`edge.store.rows.RecordClasses`: the hub), for `is_sensitive`
        self.classes: Any = None

    def private_points(self) -> Mapping[str, int]:
        """The site's personal and sensitive points (the hub's `private_ranks`; none before the
        journal's classes are known): an event about one names its subject by its value."""
        classes = self.classes
        return classes.private_ranks if classes is not None else {}  # type: ignore[no-any-return]

    def is_private(self, record: Mapping[str, Any]) -> bool:
        """A record in the pull-API shape is of class `personal` or `sensitive` (a dead letter to
        seal)."""
        from edge.model import Privacy, event_privacy

        classes = self.classes
        if record.get("type") == "event":
            points = classes.points if classes is not None else {}
            return event_privacy(str(record.get("kind")), record.get("payload"), points) != Privacy.PUBLIC
        ranks = classes.private_ranks if classes is not None else {}
        return ranks.get(record.get("point"), 0) >= 1

    @classmethod
    def open(
        cls,
        journal_path: str | os.PathLike[str],
        master_key_file: str,
        clock: Callable[[], float] | None = None,
        state_path: str | os.PathLike[str] | None = None,
        blob_dir: str | os.PathLike[str] | None = None,
    ) -> Sealer:
        """The sealer of the site whose journal is `journal_path`, with the master key in
        `master_key_file` (refused, naming the file, unless only its owner can read it). `clock`:
        the wall time seals are recorded at (the journal's; default the system's). A keys.db
        missing or empty while the journal (and the state DB at `state_path`, the snapshots in
        `blob_dir`, when given) holds sealed data is refused, and not created
        (`check_key_store`: KeyStoreUnusable, a WrongMasterKey); so is one that is not a database,
        or one that holds another journal's keys (`SubjectKeys`' `journal`)."""
        import time

        from edge.privacy.keyfile import load_master_key
        from edge.privacy.keys import SubjectKeys

        path = keys_path(journal_path)
        master = load_master_key(master_key_file)
        return cls(
            SubjectKeys(
                path,
                master,
                clock=clock or time.time,
                sealed_elsewhere=lambda: sealed_data(journal_path, state_path, blob_dir),
                journal=Path(journal_path).name,
            ),
            os.fspath(journal_path),
        )

    def seal_payload(self, payload: dict[str, Any], text: str, ts: float, source: str) -> bytes:
        self.sealed += 1
        subject = subject_of(payload, self.private_points())
        return self.keys.seal(subject, text.encode(), aad("payload", ts, source), ts)

    def seal_value(self, value: Any, ts: float, source: str) -> bytes:
        self.sealed += 1
        return self.keys.seal(value_subject(value), orjson.dumps(value), aad("value", ts, source), ts)

    def seal_record(
        self,
        record: Mapping[str, Any],
        where: str,
        about: Mapping[str, Any] | None = None,
        journal_seq: int | None = None,
    ) -> bytes:
        """A whole record (a dead letter) bound to `where` (its sink and seq), under the key of the
        subject `about` names (the record as the journal holds it, when `record` carries a
        recipient's pseudonyms instead; else `record`'s own): an event's resident or plate, a
        reading's string value; else, with `journal_seq` (the seq of the journal row it is a copy
        of), the key that row's payload is sealed under (a rule's alert, `rule_error` or
        `rule_action_failed` is its firing's resident's, though it names them in no field:
        `SubjectPayload`); else the site's. It expires from when it was dead-lettered, so the key
        keeps the time of this seal."""
        self.sealed += 1
        text = orjson.dumps(record)
        bound = aad("record", 0.0, where)
        subject = record_subject(about if about is not None else record, self.private_points())
        if subject == SITE_SUBJECT and journal_seq is not None:
            kid = self._journal_kid(journal_seq, about if about is not None else record)
            if kid is not None:
                try:
                    return self.keys.seal_kid(kid, text, bound)
                except (LookupError, ValueError):  # forgotten since (the record reads as erased)
                    pass
        return self.keys.seal(subject, text, bound)

    def _journal_kid(self, seq: int, record: Mapping[str, Any]) -> bytes | None:
        """The reference of the key the journal's event `seq` is sealed under, when that row is
        still `record`'s (same time and source), None otherwise (a reading, a row in clear or
        gone, no journal known)."""
        import sqlite3

        from edge.privacy.keys import envelope_kid

        if self.journal_path is None or record.get("type") != "event":
            return None
        try:
            row = stored_event_at(self.journal_path, int(seq))
        except sqlite3.Error:
            return None
        if row is None or type(row[2]) is not bytes:
            return None
        if row[0] != record.get("ts") or row[1] != record.get("source"):
            return None
        return envelope_kid(row[2])

    def open_record(self, envelope: bytes, where: str) -> dict[str, Any] | None:
        """A sealed record (`seal_record`), or None when its subject was forgotten."""
        try:
            text = self.open_text(envelope, "record", 0.0, where)
        except LookupError:
            return None
        return dict(orjson.loads(text))

    def seal_blob(self, subject: str, data: bytes, where: str) -> bytes:
        """A snapshot file's content sealed under `subject`'s key, bound to `where` (its camera
        and blob id: a file renamed onto another id does not open)."""
        self.sealed += 1
        return self.keys.seal(subject, data, aad("blob", 0.0, where))

    def open_blob(self, envelope: bytes, where: str) -> bytes:
        """What `seal_blob` sealed. KeyForgotten (a LookupError) when its subject was forgotten,
        EnvelopeError or WrongMasterKey (ValueErrors) when it does not open here."""
        return self.keys.open(envelope, aad("blob", 0.0, where))

    def open_text(self, envelope: bytes, column: str, ts: float, source: str) -> str:
        """The sealed text. Raises KeyForgotten (a LookupError) when its subject was forgotten,
        EnvelopeError or WrongMasterKey (ValueErrors) when it does not open here."""
        return self.keys.open(envelope, aad(column, ts, source)).decode()

    def close(self) -> None:
        self.keys.close()


def open_record(path: str, envelope: Any, where: str) -> Any:
    """A stored record of the file `path` (a dead letter): as it is when it was not sealed, opened
    when this process holds the keys, else a marker saying it is erased or sealed."""
    if type(envelope) is not bytes:
        return orjson.loads(envelope)
    sealer = sealer_for(path)
    if not isinstance(sealer, Sealer):
        return {"sealed": True}
    try:
        rec = sealer.open_record(envelope, where)
    except ValueError:  # altered, or another key store's
        return {"sealed": True}
    return {"erased": True} if rec is None else rec


def seal_text(path: str, text: str, where: str) -> str | bytes:
    """`text` to store in the SQLite file `path` (a component's own sensitive state): sealed
    under the site key, bound to `where`, when this process seals for that file; else as it is."""
    sealer = sealer_for(path)
    if not isinstance(sealer, Sealer):
        return text
    sealer.sealed += 1
    return sealer.keys.seal(SITE_SUBJECT, text.encode(), aad("state", 0.0, where))


def open_text(path: str, stored: str | bytes | None, where: str) -> str | None:
    """What `seal_text` stored: the text, or None when it cannot be opened here."""
    if stored is None or isinstance(stored, str):
        return stored
    sealer = sealer_for(path)
    if sealer is None:
        return None
    try:
        return sealer.open_text(bytes(stored), "state", 0.0, where)
    except (LookupError, ValueError):  # forgotten, or not this store's
        return None
