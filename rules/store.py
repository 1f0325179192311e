"""Rules, their version history and their runtime state, in the state database.

Every change of a rule writes a new row in `rule_versions` (who, when, what: the whole document,
and whether the rule's state was kept or reset), so any version can be shown or restored. A change
made against the version its author loaded (`expecting`) is refused, in its own transaction, when
the rule moved on meanwhile (`VersionConflict`): two editors saving one rule never lose a change
silently. Rule state (pending `for:` timers with their start,
active alerts, last firing) is written by a background thread (`StateWriter`) so a synchronous
fsync never sits between a reading and the action it triggers.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge import fmt
from edge.state import StateDB
from edge.store.rows import sealer_for
from rules.engine import KeyState
from rules.model import PackPlace, RuleDoc, edited_text, same_logic

if TYPE_CHECKING:
    from edge.store.backup import RestoreFacts

MIGRATIONS = [
    """
    CREATE TABLE rules (
        id TEXT PRIMARY KEY,
        doc TEXT NOT NULL,           -- the rule document (JSON)
        enabled INTEGER NOT NULL,
        version INTEGER NOT NULL,
        updated REAL NOT NULL,
        updated_by TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE rule_versions (
        rule_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,        -- create, update, enable, disable, delete, restore, import
        doc TEXT NOT NULL,
        PRIMARY KEY (rule_id, version)
    );
    CREATE TABLE rule_state (
        rule_id TEXT NOT NULL,
        key TEXT NOT NULL,           -- point id, event source, or '' (schedules)
        phase TEXT NOT NULL,         -- ok, pending, active
        since REAL,
        last_fired REAL,
        last_notified REAL,
        args TEXT,                   -- evaluation context (JSON) for re-evaluating after restart
        PRIMARY KEY (rule_id, key)
    );
    CREATE TABLE rules_meta (key TEXT PRIMARY KEY, value TEXT);
    """,
    # what a change did to the rule's runtime state: new (no rule before), kept (only presentation
    # or actions changed), reset (the logic changed, or the rule was enabled/disabled/deleted);
    # '' for versions written before this was recorded
    "ALTER TABLE rule_versions ADD COLUMN state TEXT NOT NULL DEFAULT ''",
    # the YAML its author wrote (NULL: the rule came as JSON) and, for a rule imported from a pack,
    # its place there (`rules.model.PackPlace`), so the editor and an export give that text back
    """
    ALTER TABLE rules ADD COLUMN source TEXT;
    ALTER TABLE rules ADD COLUMN place TEXT;
    ALTER TABLE rule_versions ADD COLUMN source TEXT;
    """,
]


@dataclass
class StoredRule:
    id: str
    doc: RuleDoc
    enabled: bool
    version: int
    updated: float
    updated_by: str


#: rule id -> the version a change in this context was made against (None: the rule did not
#: exist). A context variable, not an attribute: it follows the request that set it into the thread
#: a pack is stored in (`asyncio.to_thread` copies the context), and no other request sees it.
_EXPECTED: ContextVar[Mapping[str, int | None] | None] = ContextVar("rules_expected_versions", default=None)


class VersionConflict(Exception):
    """A change made against a version of a rule that is no longer its current one: nothing was
    stored. `current` is the rule as stored now (None: deleted since, or never stored)."""

    def __init__(self, rule_id: str, expected: int | None, current: StoredRule | None) -> None:
        self.rule_id = rule_id
        self.expected = expected
        self.current = current
        now = f"version {current.version}" if current else "deleted"
        super().__init__(f"rule {rule_id!r} is {now}, not version {expected}")


@contextmanager
def expecting(versions: Mapping[str, int | None]) -> Iterator[None]:
    """Within it, a change of a rule `versions` names is stored only if the rule is still at that
    version (None: does not exist) when its transaction writes; else `VersionConflict` and the
    whole transaction (a pack's every rule) is rolled back. Checked inside the write, so a change
    another process (`edge rules import`) committed just before is caught too."""
    token = _EXPECTED.set(dict(versions))
    try:
        yield
    finally:
        _EXPECTED.reset(token)


class RuleStore:
    def __init__(self, state: StateDB) -> None:
        self.state = state
        state.migrate("rules", MIGRATIONS)

    COLUMNS = "id, doc, enabled, version, updated, updated_by, source, place"

    def _row(self, r: Any) -> StoredRule:
        doc = RuleDoc(json.loads(r[1]), r[6], PackPlace.from_json(r[7]))
        return StoredRule(r[0], doc, bool(r[2]), r[3], r[4], r[5])

    def list_rules(self) -> list[StoredRule]:
        with self.state.lock:
            rows = self.state.conn.execute(f"SELECT {self.COLUMNS} FROM rules ORDER BY id").fetchall()
        return [self._row(r) for r in rows]

    def stored_versions(self) -> dict[str, int]:
        """Each stored rule's id -> its version: what a running gateway compares with the versions
        it runs, to pick up what another process (`edge rules import`) stored."""
        with self.state.lock:
            rows = self.state.conn.execute("SELECT id, version FROM rules").fetchall()
        return {r[0]: r[1] for r in rows}

    def changed_elsewhere(self) -> int:
        """SQLite's `data_version` of this connection: it changes when another connection (another
        process) commits to the state database, never for this connection's own writes."""
        with self.state.lock:
            return int(self.state.conn.execute("PRAGMA data_version").fetchone()[0])

    def get(self, rule_id: str) -> StoredRule | None:
        with self.state.lock:
            r = self.state.conn.execute(f"SELECT {self.COLUMNS} FROM rules WHERE id=?", (rule_id,)).fetchone()
        return self._row(r) if r else None

    def put(
        self, doc: dict[str, Any], actor: str, action: str = "update", keep_state: bool = False
    ) -> StoredRule:
        """Insert or replace a rule (already validated) and record the new version. Its persisted
        state is dropped unless `keep_state` (the change left its logic alone).

        The rule's text is the one `doc` brings (a `RuleDoc` from the editor or a pack); a change
        that brings none (enabling, a JSON client) rewrites only the changed keys of the stored
        text. A rule keeps its place in its pack until a pack import gives it a new one."""
        return self.put_many([doc], actor, action, lambda _old: keep_state)[0][0]

    def put_many(
        self,
        docs: list[dict[str, Any]],
        actor: str,
        action: str,
        keeps: Callable[[RuleDoc], bool] | set[str] | frozenset[str] = frozenset(),
    ) -> list[tuple[StoredRule, RuleDoc | None, bool]]:
        """`put` of each of `docs` in one transaction: all stored, or (an error) none. A rule
        keeps its persisted state when `keeps` says so of its stored document (a callable), or
        when its id is in `keeps` (a set) and the new version has the same logic
        (`rules.model.same_logic`). Each rule as stored, its document before (None: new) and
        whether its state was kept. One transaction for a pack of a thousand rules: a fraction of
        a second, in the caller's thread, instead of a commit per rule."""
        now = time.time()
        out: list[tuple[StoredRule, RuleDoc | None, bool]] = []
        with self.state.lock:
            conn = self.state.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for doc in docs:
                    out.append(self._put_one(conn, doc, actor, action, keeps, now))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT has rolled back already
                    conn.execute("ROLLBACK")
                raise
        return out

    def _put_one(
        self,
        conn: Any,
        doc: dict[str, Any],
        actor: str,
        action: str,
        keeps: Callable[[RuleDoc], bool] | set[str] | frozenset[str],
        now: float,
    ) -> tuple[StoredRule, RuleDoc | None, bool]:
        rule_id = doc["id"]
        enabled = bool(doc.get("enabled", True))
        text = json.dumps(doc, ensure_ascii=False)
        source = getattr(doc, "source", None)
        place = getattr(doc, "place", None)
        self._check_expected(conn, rule_id)
        row = conn.execute("SELECT MAX(version) FROM rule_versions WHERE rule_id=?", (rule_id,)).fetchone()
        version = (row[0] or 0) + 1
        existed = conn.execute("SELECT doc, source, place FROM rules WHERE id=?", (rule_id,)).fetchone()
        previous = (
            RuleDoc(json.loads(existed[0]), existed[1], PackPlace.from_json(existed[2])) if existed else None
        )
        if previous is None:
            keep = False
        elif callable(keeps):
            keep = keeps(previous)
        else:
            keep = rule_id in keeps and same_logic(previous, doc)
        state = "kept" if keep else "reset" if existed else "new"
        if existed and source is None and existed[1] is not None:
            source = edited_text(existed[1], json.loads(existed[0]), doc)
        if existed and place is None:
            place = PackPlace.from_json(existed[2])
        conn.execute(
            "INSERT INTO rules(id, doc, enabled, version, updated, updated_by, source, place) "
            "VALUES (?,?,?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc, enabled=excluded.enabled, "
            "version=excluded.version, updated=excluded.updated, updated_by=excluded.updated_by, "
            "source=excluded.source, place=excluded.place",
            (rule_id, text, int(enabled), version, now, actor, source, place and place.to_json()),
        )
        conn.execute(
            "INSERT INTO rule_versions(rule_id, version, ts, actor, action, doc, state, source) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (rule_id, version, now, actor, action, text, state, source),
        )
        if state != "kept":
            conn.execute("DELETE FROM rule_state WHERE rule_id=?", (rule_id,))
        return StoredRule(rule_id, RuleDoc(doc, source, place), enabled, version, now, actor), previous, keep

    def _check_expected(self, conn: Any, rule_id: str) -> None:
        """`VersionConflict` when the change being written was made against a version of
        `rule_id` (`expecting`) that is not the stored one (in the caller's transaction)."""
        expected = _EXPECTED.get()
        if expected is None or rule_id not in expected:
            return
        r = conn.execute(f"SELECT {self.COLUMNS} FROM rules WHERE id=?", (rule_id,)).fetchone()
        current = self._row(r) if r else None
        if (current.version if current else None) != expected[rule_id]:
            raise VersionConflict(rule_id, expected[rule_id], current)

    def delete(self, rule_id: str, actor: str) -> int | None:
        """Delete a rule, recording its deletion as a version: that version, or None (no such rule).

        The rule is read inside the write's transaction: another process (`edge rules import`)
        may commit a version of it until then, and the deletion must follow that version (its
        number, and its document as the one deleted), not one read before."""
        now = time.time()
        with self.state.lock:
            conn = self.state.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_expected(conn, rule_id)
                r = conn.execute(f"SELECT {self.COLUMNS} FROM rules WHERE id=?", (rule_id,)).fetchone()
                if r is None:
                    conn.execute("ROLLBACK")
                    return None
                current = self._row(r)
                conn.execute(
                    "INSERT INTO rule_versions(rule_id, version, ts, actor, action, doc, state, source) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (
                        rule_id,
                        current.version + 1,
                        now,
                        actor,
                        "delete",
                        json.dumps(current.doc, ensure_ascii=False),
                        "reset",
                        current.doc.source,
                    ),
                )
                conn.execute("DELETE FROM rules WHERE id=?", (rule_id,))
                conn.execute("DELETE FROM rule_state WHERE rule_id=?", (rule_id,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT has rolled back already
                    conn.execute("ROLLBACK")
                raise
        return current.version + 1

    def pack_changes(self, docs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """What storing `docs` (a pack's rules, compiled) would do to each rule, storing nothing:
        `change` is `new`, `replaced` (its document differs) or `unchanged` (only its text may
        differ), with the stored `version` (None: new), `enabled_before`/`enabled_after`, and
        who changed it last and how (`updated_by`, `updated`, `action`: an import, or an edit)."""
        out: list[dict[str, Any]] = []
        with self.state.lock:
            conn = self.state.conn
            for doc in docs:
                rule_id = doc["id"]
                after = bool(doc.get("enabled", True))
                r = conn.execute(
                    "SELECT r.doc, r.enabled, r.version, r.updated, r.updated_by, v.action FROM rules r "
                    "LEFT JOIN rule_versions v ON v.rule_id = r.id AND v.version = r.version WHERE r.id=?",
                    (rule_id,),
                ).fetchone()
                if r is None:
                    out.append({"id": rule_id, "change": "new", "version": None, "enabled_after": after})
                    continue
                # the pack's document as storing it would write it (JSON: tuples become lists)
                same = json.loads(r[0]) == json.loads(json.dumps(doc, ensure_ascii=False))
                out.append(
                    {
                        "id": rule_id,
                        "change": "unchanged" if same else "replaced",
                        "version": r[2],
                        "enabled_before": bool(r[1]),
                        "enabled_after": after,
                        "updated": r[3],
                        "updated_by": r[4],
                        "action": r[5] or "",
                    }
                )
        return out

    def versions(self, rule_id: str) -> list[dict[str, Any]]:
        with self.state.lock:
            rows = self.state.conn.execute(
                "SELECT version, ts, actor, action, doc, state, source FROM rule_versions "
                "WHERE rule_id=? ORDER BY version DESC",
                (rule_id,),
            ).fetchall()
        return [
            {
                "version": r[0],
                "ts": r[1],
                "actor": r[2],
                "action": r[3],
                "rule": json.loads(r[4]),
                "state": r[5],
                "source": r[6],
            }
            for r in rows
        ]

    def version_doc(self, rule_id: str, version: int) -> RuleDoc | None:
        """The document of a version with the text it had (restoring it restores that text)."""
        with self.state.lock:
            r = self.state.conn.execute(
                "SELECT doc, source FROM rule_versions WHERE rule_id=? AND version=?", (rule_id, version)
            ).fetchone()
        return RuleDoc(json.loads(r[0]), r[1]) if r else None

    # ------------------------------------------------------------ meta and state
    def meta(self, key: str) -> str | None:
        with self.state.lock:
            r = self.state.conn.execute("SELECT value FROM rules_meta WHERE key=?", (key,)).fetchone()
        return r[0] if r else None

    def set_meta(self, key: str, value: str) -> None:
        with self.state.lock:
            self.state.conn.execute(
                "INSERT INTO rules_meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def load_states(self) -> dict[str, dict[str, KeyState]]:
        with self.state.lock:
            rows = self.state.conn.execute(
                "SELECT rule_id, key, phase, since, last_fired, last_notified, args FROM rule_state"
            ).fetchall()
        out: dict[str, dict[str, KeyState]] = {}
        resealed: list[tuple[bytes, str, str]] = []
        for r in rows:
            text = self._open_args(r[0], r[1], r[6])
            args = tuple(json.loads(text)) if text else None
            out.setdefault(r[0], {})[r[1]] = KeyState(r[2], r[3], r[4], r[5], args)
            if args and isinstance(r[6], bytes) and not self._under_own_key(r[6], args):
                # an earlier version sealed it under the site key: a forget would not shred it
                sealed = self._seal_args(r[0], r[1], args)
                if isinstance(sealed, bytes):
                    resealed.append((sealed, r[0], r[1]))
        if resealed:
            with self.state.lock:
                self.state.conn.executemany(
                    "UPDATE rule_state SET args=? WHERE rule_id=? AND key=?", resealed
                )
        return out

    def _under_own_key(self, envelope: bytes, args: tuple[Any, ...]) -> bool:
        """Whether a stored state's envelope is sealed under the key of the subject its record
        names (`args_subject`), as `_seal_args` seals it now."""
        from edge.privacy.atrest import Sealer
        from edge.privacy.keys import envelope_kid

        sealer = sealer_for(self.state.path)
        if not isinstance(sealer, Sealer):
            return True
        kid = sealer.keys.kid_of(args_subject(args, sealer.private_points())[0])
        return kid is not None and envelope_kid(envelope) == kid

    # A state's args are the record that fired it (a blood pressure, say): where the site seals
    # sensitive data at rest, they are sealed like the journal's payloads, under the key of the
    # subject the record names (so forgetting the resident or plate shreds it), bound to the rule
    # and key.
    def _seal_args(self, rule_id: str, key: str, args: tuple[Any, ...] | None) -> str | bytes | None:
        if not args:
            return None
        if sealer_for(self.state.path) is None:
            return json.dumps(args, default=str, ensure_ascii=False)
        from edge.privacy.atrest import Sealer, aad  # cryptography, only where a site seals

        sealer = sealer_for(self.state.path)
        if not isinstance(sealer, Sealer):  # unregistered in between, or another kind
            return json.dumps(args, default=str, ensure_ascii=False)
        subject, kept = args_subject(args, sealer.private_points())
        text = json.dumps(kept, default=str, ensure_ascii=False)
        sealer.sealed += 1
        where = f"rule_state\x00{rule_id}\x00{key}"
        return sealer.keys.seal(subject, text.encode(), aad("state", 0.0, where))

    def _open_args(self, rule_id: str, key: str, stored: str | bytes | None) -> str | None:
        if stored is None or isinstance(stored, str):
            return stored
        from edge.privacy.atrest import open_text

        return open_text(self.state.path, stored, f"rule_state\x00{rule_id}\x00{key}")

    def save_states(self, rows: list[tuple[str, str, KeyState | None]]) -> None:
        with self.state.lock:
            conn = self.state.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for rule_id, key, st in rows:
                    if st is None or (st.phase == "ok" and st.last_fired is None):
                        conn.execute("DELETE FROM rule_state WHERE rule_id=? AND key=?", (rule_id, key))
                        continue
                    conn.execute(
                        "INSERT INTO rule_state(rule_id, key, phase, since, last_fired, last_notified, args) "
                        "VALUES (?,?,?,?,?,?,?) ON CONFLICT(rule_id, key) DO UPDATE SET phase=excluded.phase, "
                        "since=excluded.since, last_fired=excluded.last_fired, "
                        "last_notified=excluded.last_notified, args=excluded.args",
                        (
                            rule_id,
                            key,
                            st.phase,
                            st.since,
                            st.last_fired,
                            st.last_notified,
                            self._seal_args(rule_id, key, st.args),
                        ),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT has rolled back already
                    conn.execute("ROLLBACK")
                raise


#: rules_meta key: set by a restore (`restored`), read and cleared by the next start, whose
#: `no_data` watches then count from the start instead of from the journal's newest readings
RESTORED = "restored"


def restored(state: str, facts: RestoreFacts) -> tuple[list[str], dict[str, Any]]:
    """A restore's step on the state DB it puts back (`Plugin.restored_state` of rules/plugin.py):
    the archive's rule timers are not resumed as if no time had passed.

    A pending `for:` began on readings taken before the backup, and a `notify: repeat` alert's
    next repeat was set from one: resumed at the next start, their deadlines, passed in the time
    between the backup and the restore, would fire at once, a barrier write or a webhook run on a
    condition that held hours or days ago. They are dropped: the condition must hold again on
    fresh readings (and `for:` again for its whole length); when each rule last fired is kept. A
    `no_data` watch counts from a point's newest reading in the journal, which after a restore is
    the backup's (the readings since are not in it): the next start counts it from the start
    (`RESTORED`). Returns the lines the restore prints and the counts for its event."""
    conn = sqlite3.connect(state)
    try:
        with conn:
            if not conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='rule_state'"
            ).fetchone():
                return [], {}
            rows = conn.execute(
                "SELECT s.rule_id, s.key, s.phase, s.last_fired, r.doc FROM rule_state s "
                "LEFT JOIN rules r ON r.id = s.rule_id WHERE s.phase IN ('pending', 'active') "
                "ORDER BY s.rule_id, s.key"
            ).fetchall()
            dropped: list[str] = []
            for rule_id, key, phase, last_fired, doc in rows:
                if phase == "active" and (doc is None or json.loads(doc).get("notify") != "repeat"):
                    continue  # an alert with no timer: a fresh reading clears it, or it stays
                dropped.append(rule_id)
                if last_fired is None:
                    conn.execute("DELETE FROM rule_state WHERE rule_id=? AND key=?", (rule_id, key))
                else:
                    conn.execute(
                        "UPDATE rule_state SET phase='ok', since=NULL, last_notified=NULL, args=NULL "
                        "WHERE rule_id=? AND key=?",
                        (rule_id, key),
                    )
            watching = [
                rule_id
                for rule_id, doc in conn.execute("SELECT id, doc FROM rules WHERE enabled=1 ORDER BY id")
                if any(isinstance(t, dict) and "no_data" in t for t in json.loads(doc).get("when") or ())
            ]
            if watching:
                conn.execute(
                    "INSERT INTO rules_meta(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (RESTORED, json.dumps({"archive": facts.archive})),
                )
    finally:
        conn.close()
    said: list[str] = []
    counts: dict[str, Any] = {}
    if dropped:
        rules = ", ".join(dict.fromkeys(dropped))
        said.append(
            f"{fmt.count(len(dropped), 'rule timer')} of the backup "
            f"{'was' if len(dropped) == 1 else 'were'} dropped (pending `for:` conditions and "
            f"`notify: repeat` alerts of rules {rules}): their deadlines may have passed since the "
            "backup, on readings taken before it; each condition must hold again on fresh readings"
        )
        counts["rule_timers_dropped"] = len(dropped)
    if watching:
        said.append(
            f"the `no_data` watches of {fmt.count(len(watching), 'rule')} ({', '.join(watching)}) count "
            "from the next start, not from the backup's last readings"
        )
        counts["rule_no_data_restarted"] = len(watching)
    return said, counts


def args_subject(args: tuple[Any, ...], private: Container[str]) -> tuple[str, tuple[Any, ...]]:
    """Whom a rule state's record (its args: value, previous value, point, ..., the event's
    payload last) names, by the project's one subject rule: an event's resident or plate, or the
    string `value` of an event about a private point (`edge.privacy.atrest.subject_of`); a
    private point's string reading (a plate) by its value; else the site. Returned with the args
    to keep under that subject's key: a previous reading naming someone else (the plate before)
    is not kept, as it would outlive that other subject's erasure."""
    from edge.privacy.atrest import SITE_SUBJECT, subject_of

    payload = args[10] if len(args) > 10 else None
    if isinstance(payload, dict):
        return subject_of(payload, private), args
    value = args[0]
    point = args[2] if len(args) > 2 else None
    if not (isinstance(point, str) and point in private and type(value) is str and value):
        return SITE_SUBJECT, args
    if len(args) > 1 and type(args[1]) is str and args[1] != value:
        return value, (args[0], None, *args[2:])
    return value, args


class StateWriter:
    """Persists rule state changes (and small meta values) in a thread, coalescing what piles up
    into one transaction."""

    def __init__(self, store: RuleStore) -> None:
        self.store = store
        Item = tuple[list[tuple[str, str, KeyState | None]], dict[str, str]]
        self._q: queue.Queue[Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="rules-state", daemon=True)
        self.written = 0
        self.errors = 0
        self._idle = threading.Event()
        self._idle.set()
        self._thread.start()

    def submit(
        self, rows: list[tuple[str, str, KeyState | None]], meta: dict[str, str] | None = None
    ) -> None:
        self._idle.clear()
        self._q.put((rows, meta or {}))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            rows, meta = list(item[0]), dict(item[1])
            stop = False
            while not self._q.empty():
                more = self._q.get()
                if more is None:
                    stop = True
                    break
                rows.extend(more[0])
                meta.update(more[1])
            latest: dict[tuple[str, str], KeyState | None] = {}
            for rule_id, key, st in rows:
                latest[(rule_id, key)] = st
            try:
                if latest:
                    self.store.save_states([(r, k, s) for (r, k), s in latest.items()])
                for key, value in meta.items():
                    self.store.set_meta(key, value)
                self.written += len(latest)
            except Exception:
                self.errors += 1
            if self._q.empty():
                self._idle.set()
            if stop:
                return

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=10)
