"""Consistent copies of the site's SQLite files while the gateway writes them, and the checks a
restore makes on a copy before it replaces anything.

A copy goes through SQLite's online backup API on connections of its own, in one step: the source
is read inside one read transaction, so the copy is the database as it was when that transaction
began (WAL mode: the gateway keeps writing meanwhile, and nothing it commits later is in the copy).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import paths
from edge.store.schema import JOURNAL_ID_META, JOURNAL_ID_SINCE_META, SCHEMA_VERSION, journal_id

# the trend index's own version, as edge/store/trend.py writes it; a restored index of another
# version is rebuilt from the journal by the trend plugin, so it is recorded, never refused
TREND_META = "SELECT value FROM meta WHERE key='version'"


@dataclass(frozen=True)
class RestoreFacts:
    """What a restore knows of the time its archive does not cover, for the features whose state
    in the restored state DB depends on it (`Plugin.restored_state`): each gets these facts
    with the state DB copy, before anything is put in place."""

    archive: str  # the archive's file name
    #: the archive journal's last seq: records above it are not in the restored journal
    archive_last_seq: int
    #: the journal being replaced, when it can be read: what it journaled after the archive's last
    #: seq (all of it, for a journal of its own: `replaced_after` is then 0) went to the receivers
    replaced: str | None
    replaced_after: int
    #: (first, last) seq of the records the restored journal lacks (the restore's gap; None: none),
    #: and the span of time they were journaled in (UTC epoch seconds; `until` is the restore's
    #: time where the replaced journal does not say)
    gap: tuple[int, int] | None = None
    gap_from: float | None = None
    gap_until: float | None = None


@dataclass(frozen=True)
class Copied:
    """What one copied database holds: its schema version(s) and, for a journal, its last seq."""

    versions: dict[str, int]
    last_seq: int | None = None


def _open_ro(path: str) -> sqlite3.Connection:
    # read-only through a URI, so a copy never creates a missing file nor takes a write lock
    return sqlite3.connect(paths.sqlite_uri(path), uri=True, timeout=30)


def copy_database(src: str, dst: str) -> None:
    """Copy the database at `src` into a new file `dst` in one backup step (one snapshot)."""
    Path(dst).unlink(missing_ok=True)
    source = _open_ro(src)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)  # pages=-1: every page in one step, under one read transaction
            target.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file, no -wal
        finally:
            target.close()
    finally:
        source.close()


def journal_facts(path: str) -> Copied:
    """The journal copy's schema version and last seq."""
    conn = _open_ro(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        row = conn.execute("SELECT max(seq) FROM journal").fetchone()
        last = int(row[0]) if row and row[0] is not None else 0
        return Copied({"journal": version}, last)
    finally:
        conn.close()


def state_facts(path: str) -> Copied:
    """The state DB copy's schema version per component."""
    conn = _open_ro(path)
    try:
        has = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_versions'"
        ).fetchone()
        rows = conn.execute("SELECT component, version FROM schema_versions").fetchall() if has else []
        return Copied({str(c): int(v) for c, v in rows})
    finally:
        conn.close()


def trend_facts(path: str) -> Copied:
    """The trend index copy's version (0 when it has none yet)."""
    conn = _open_ro(path)
    try:
        has = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        row = conn.execute(TREND_META).fetchone() if has else None
        return Copied({"trend": int(row[0]) if row and row[0] is not None else 0})
    finally:
        conn.close()


def integrity_problem(path: str) -> str | None:
    """None when `PRAGMA integrity_check` finds the file sound, else what it found first."""
    try:
        conn = _open_ro(path)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    result = [str(r[0]) for r in rows]
    if result == ["ok"]:
        return None
    # one row may hold many lines, one per fault: the first three are enough to say what it is
    faults = [line for r in result for line in r.splitlines() if line and not line.startswith("***")]
    more = f"; and {len(faults) - 3} more" if len(faults) > 3 else ""
    return "; ".join(faults[:3]) + more


def journal_too_new(version: int) -> bool:
    """A journal copy this program could not open (written by a newer release)."""
    return version > SCHEMA_VERSION


#: the journal's meta key a restore leaves when it continues the seqs above records the backup
#: does not hold: what the next start journals as `journal_restored`
RESTORED_META = "restored"
LAST_SEQ_META = "SELECT value FROM meta WHERE key='last_seq'"


def _last_seq(conn: sqlite3.Connection) -> int:
    """The last seq the journal issued: meta.last_seq or its newest row, the higher (as it opens)."""
    row = conn.execute(LAST_SEQ_META).fetchone()
    meta = int(row[0]) if row and row[0] is not None else 0
    top = conn.execute("SELECT max(seq) FROM journal").fetchone()[0]
    return max(meta, int(top or 0))


def issued_seq(path: str) -> int:
    """The highest seq a journal about to be replaced has issued or any cursor has reached.

    Opened read-write (nothing is written): a gateway killed mid-run leaves committed records in
    the `-wal`, which a read-only connection may be unable to read without its `-shm`."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute("PRAGMA query_only=1")
        cursor = conn.execute("SELECT max(seq) FROM cursors").fetchone()[0]
        return max(_last_seq(conn), int(cursor or 0))
    finally:
        conn.close()


#: how many of the archive's newest records a restore looks for in the journal it replaces
LINEAGE_PROBE = 100


def not_descended(path: str, copy: str) -> str | None:
    """None when the journal at `path` went on from the archive's journal copy at `copy` (it holds
    the copy's newest records, or both carry the same `journal_id` where retention deleted them),
    else why not, or why that cannot be told, as a phrase about that journal.

    Only such a journal knows how far the gateway went on after the backup: any other (a
    replacement box's first start, another site's file) issued seqs of its own, which say nothing
    of the seqs the receivers hold from the archive's line. Records are compared by seq, time,
    point and kind: a value may have been sealed since, never moved."""
    source = _open_ro(copy)
    try:
        probe = source.execute(
            "SELECT seq, ts, point, kind FROM journal ORDER BY seq DESC LIMIT ?", (LINEAGE_PROBE,)
        ).fetchall()
        copy_id = journal_id(source)
        archived = _last_seq(source)
    finally:
        source.close()
    conn = sqlite3.connect(path, timeout=30)  # read-write for a -wal without its -shm, as issued_seq
    try:
        conn.execute("PRAGMA query_only=1")
        live_id = journal_id(conn)
        row = conn.execute("SELECT value FROM meta WHERE key=?", (JOURNAL_ID_SINCE_META,)).fetchone()
        live_since = int(row[0]) if row and row[0] is not None else None
        marks = ",".join("?" * len(probe))
        held = (
            {
                int(r[0]): tuple(r[1:])
                for r in conn.execute(
                    f"SELECT seq, ts, point, kind FROM journal WHERE seq IN ({marks})", [r[0] for r in probe]
                )
            }
            if probe
            else {}
        )
        issued = _last_seq(conn)
        live_newest = conn.execute("SELECT max(seq) FROM journal").fetchone()[0]
    finally:
        conn.close()
    newest = int(probe[0][0]) if probe else None
    for seq, *record in probe:
        if int(seq) in held:
            if held[int(seq)] != tuple(record):
                return (
                    f"holds a record at seq {seq} other than the backup's (a journal of its own, "
                    "such as a replacement box's first start)"
                )
    if held:
        return None
    if copy_id is not None and live_id is not None:
        if copy_id == live_id:
            return None
        return (
            "is another journal than the backup's (its journal_id differs: a journal of its own, "
            "such as a replacement box's first start)"
        )
    if copy_id is None and live_since is not None and newest is not None and newest <= live_since:
        # an archive taken before the journal was given its id (an earlier release's backup, or
        # the one install.sh takes before an upgrade): the journal had issued past its newest
        # record then, and the newest records agreed or are gone with retention
        return None
    if newest is None:
        # an archive of a journal that holds nothing: so may the one it replaces, at the same seq
        if live_newest is None and issued == archived:
            return None
        return "cannot be compared with the backup, which holds no record"
    if issued < newest:
        return (
            f"has issued seqs only up to {issued}, below the backup's newest record ({newest}): a "
            "journal of its own, such as a replacement box's first start"
        )
    return (
        f"no longer holds the backup's newest records (up to seq {newest}; deleted at retention), so "
        "whether it went on from this backup cannot be told"
    )


def carry_journal_id(copy: str, replaced: str | None = None) -> str:
    """Give the journal copy a `journal_id` where it has none (an archive of an earlier release):
    that of the journal it replaces when that one went on from it (`replaced`: its later backups
    carry that id), else a new one; returns it. The restored journal and every backup of it carry
    it from then on."""
    conn = sqlite3.connect(copy)
    try:
        with conn:
            known = journal_id(conn)
            if known is not None:
                return known
            made = replaced or uuid.uuid4().hex
            conn.execute("INSERT INTO meta(key, value) VALUES(?, ?)", (JOURNAL_ID_META, made))
            return made
    finally:
        conn.close()


def journal_id_at(path: str) -> str | None:
    """The `journal_id` of the journal at `path`, read only (None: it has none)."""
    conn = sqlite3.connect(path, timeout=30)  # read-write for a -wal without its -shm, as issued_seq
    try:
        conn.execute("PRAGMA query_only=1")
        return journal_id(conn)
    finally:
        conn.close()


def newest_ts(path: str, read_only: bool = True) -> float | None:
    """The ts of the newest record (highest seq) of the journal at `path`, None when it holds none.
    `read_only=False` for a live journal whose -wal may lack its -shm (see `issued_seq`)."""
    conn = _open_ro(path) if read_only else sqlite3.connect(path, timeout=30)
    try:
        conn.execute("PRAGMA query_only=1")
        row = conn.execute("SELECT ts FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        return float(row[0]) if row else None
    finally:
        conn.close()


def archived_seq(path: str) -> int:
    """The last seq of an archive's journal copy (its meta.last_seq counts rows retention deleted)."""
    conn = _open_ro(path)
    try:
        return _last_seq(conn)
    finally:
        conn.close()


def continue_after(path: str, last_seq: int, note: dict[str, object]) -> None:
    """Make the journal copy at `path` issue its next seq above `last_seq`, and leave `note`."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES('last_seq', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (int(last_seq),),
            )
            conn.execute(
                "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (RESTORED_META, json.dumps(note, sort_keys=True)),
            )
    finally:
        conn.close()


def restored_note(path: str) -> dict[str, Any] | None:
    """The note a restore left in the journal at `path`, while nothing has been journaled since
    (its last seq is still the note's `last_seq`); None otherwise. Read before the writer opens."""
    if not Path(path).exists():
        return None
    try:
        conn = _open_ro(path)
        try:
            has = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            row = (
                conn.execute("SELECT value FROM meta WHERE key=?", (RESTORED_META,)).fetchone()
                if has
                else None
            )
            if row is None:
                return None
            note = json.loads(row[0])
            if not isinstance(note, dict) or note.get("last_seq") != _last_seq(conn):
                return None
            return note
        finally:
            conn.close()
    except (sqlite3.Error, ValueError):
        return None  # the journal itself reports what is wrong with the file when it opens


def holds_sealed(path: str) -> bool:
    """The journal copy holds values sealed at rest (personal or sensitive; one row is enough)."""
    conn = _open_ro(path)
    try:
        cols = {str(r[1]) for r in conn.execute("PRAGMA table_info(journal)")}
        if "privacy" not in cols:
            return False  # a journal from before sealing
        row = conn.execute(
            "SELECT 1 FROM journal WHERE privacy >= 1 AND "
            "(typeof(value) = 'blob' OR typeof(payload) = 'blob') LIMIT 1"
        ).fetchone()
        return row is not None
    finally:
        conn.close()


ERASED_KIND = "subject_erased"


@dataclass(frozen=True)
class ErasureNotice:
    """An erasure a replaced site holds (`erasures_since`): as its state DB queued it, or as its
    journal holds the `subject_erased` event (`in_gap`: above the archive's last seq)."""

    ts: float
    payload: str
    kid: Any = None  # the key a forget that had not settled it was deleting
    audit: Any = None  # that forget's audit entry, written when it is settled
    in_gap: bool = False

    @property
    def settled(self) -> bool:
        return self.kid is None and self.audit is None

    @property
    def key(self) -> tuple[float, Any]:
        """An erasure is the same one by its time and the subject it names."""
        try:
            subject = json.loads(self.payload).get("subject")
        except (ValueError, AttributeError):
            subject = None
        return self.ts, subject


def erasures_since(
    journal: str | None, state: str | None, after_seq: int
) -> tuple[list[ErasureNotice], list[str]]:
    """The erasures a replaced site holds, for a restore to queue again in the restored state DB
    (`queue_erasures`): its state DB's queued erasures as they are, then the `subject_erased`
    events its journal holds above `after_seq` (the archive's last). Either file may be None (not
    there); one that cannot be read is named in the problems returned, and the other still read."""
    found: list[ErasureNotice] = []
    problems: list[str] = []
    if state is not None:
        try:
            conn = sqlite3.connect(state, timeout=30)  # read-write for a -wal without its -shm
            try:
                conn.execute("PRAGMA query_only=1")
                if conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='privacy_erasures'"
                ).fetchone():
                    cols = {str(r[1]) for r in conn.execute("PRAGMA table_info(privacy_erasures)")}
                    extra = "kid, audit" if {"kid", "audit"} <= cols else "NULL, NULL"
                    found += [
                        ErasureNotice(float(r[0]), str(r[1]), r[2], r[3])
                        for r in conn.execute(
                            f"SELECT ts, payload, {extra} FROM privacy_erasures ORDER BY id"
                        )
                    ]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            problems.append(f"{state} cannot be read ({exc})")
    if journal is not None:
        try:
            conn = sqlite3.connect(journal, timeout=30)
            try:
                conn.execute("PRAGMA query_only=1")
                found += [
                    ErasureNotice(float(r[0]), str(r[1]), in_gap=True)
                    for r in conn.execute(
                        "SELECT ts, payload FROM journal WHERE kind=? AND seq > ? AND typeof(payload)='text' "
                        "ORDER BY seq",
                        (ERASED_KIND, after_seq),
                    )
                ]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            problems.append(f"{journal} cannot be read ({exc})")
    return found, problems


def queue_erasures(state: str, notices: list[ErasureNotice]) -> int:
    """Queue in the restored state DB copy, not journaled yet, each erasure of `notices` it does
    not hold, or holds journaled where the restored journal lacks the event (`in_gap`): the next
    start journals it as a `subject_erased` event above the restore's seqs, so every sink and pull
    consumer receives it, whether or not it had the one the replaced journal held. One the copy
    holds unsettled (the backup ran while its forget did) is replaced by the settled one, which
    was audited already. Returns how many were queued. The erasures table must be there."""
    conn = sqlite3.connect(state)
    try:
        with conn:
            held: dict[tuple[float, Any], tuple[int, bool, bool]] = {}  # key -> (id, settled, journaled)
            for i, ts, payload, kid, audit, journaled in conn.execute(
                "SELECT id, ts, payload, kid, audit, journaled FROM privacy_erasures"
            ):
                mine = ErasureNotice(float(ts), str(payload), kid, audit)
                held[mine.key] = (int(i), mine.settled, journaled is not None)
            queued = 0
            for notice in notices:
                found = held.get(notice.key)
                if found is not None:
                    row, settled, journaled = found
                    if notice.in_gap and settled and journaled:
                        conn.execute("UPDATE privacy_erasures SET journaled=NULL WHERE id=?", (row,))
                        held[notice.key] = (row, True, False)
                        queued += 1
                    if settled or not notice.settled:
                        continue
                    conn.execute("DELETE FROM privacy_erasures WHERE id=?", (row,))
                cur = conn.execute(
                    "INSERT INTO privacy_erasures(ts, payload, kid, audit) VALUES (?, ?, ?, ?)",
                    (notice.ts, notice.payload, notice.kid, notice.audit),
                )
                held[notice.key] = (int(cur.lastrowid or 0), notice.settled, False)
                queued += 1
            return queued
    finally:
        conn.close()
