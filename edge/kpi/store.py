"""The KPI tables of the state database: per-day accumulators, the fold's state and position,
the state at each day's start (for a rebuild), and one row per alert (its acknowledgement and
clear). Everything one fold step changes is written in one transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from edge import fmt
from edge.kpi.engine import NEW, REPEAT, new_day
from edge.state import StateDB
from edge.store.reader import kind_payloads_after

if TYPE_CHECKING:
    from edge.store.backup import RestoreFacts

MIGRATIONS = [
    """
    CREATE TABLE kpi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE kpi_days (
        day TEXT PRIMARY KEY,        -- YYYY-MM-DD in the site's timezone
        data TEXT NOT NULL,          -- the accumulators (edge.kpi.engine.new_day)
        closed INTEGER NOT NULL DEFAULT 0,
        figures TEXT                 -- the figures as journaled in kpi_daily when closed
    );
    CREATE TABLE kpi_day_start (day TEXT PRIMARY KEY, state TEXT NOT NULL);
    CREATE TABLE kpi_alerts (
        alert INTEGER PRIMARY KEY,   -- journal seq of the alert's first firing
        day TEXT NOT NULL,
        akey TEXT NOT NULL,          -- edge.kpi.engine.alert_key: repeats while open join it
        severity TEXT NOT NULL,
        fired_ts REAL NOT NULL,
        ack_ts REAL,
        cleared_ts REAL
    );
    CREATE INDEX kpi_alerts_day ON kpi_alerts(day);
    CREATE TABLE kpi_alert_alias (alias INTEGER PRIMARY KEY, alert INTEGER NOT NULL);
    """
]
COMPONENT = "kpi"
#: kpi_meta key: the spans of time whose records a restored journal lacks (`restored`), each
#: {"from", "until" (UTC epoch s), "first_seq", "last_seq", "archive"}; a day one touches says so
RESTORE_GAPS = "restore_gaps"
#: seconds within which a repeat's `first_fired` names the time its first firing was journaled at
SAME_TS = 0.001


class KpiStore:
    def __init__(self, state: StateDB) -> None:
        self.db = state
        state.migrate(COMPONENT, MIGRATIONS)

    # ------------------------------------------------------------ reads
    def meta(self, key: str) -> Any:
        with self.db.lock:
            row = self.db.conn.execute("SELECT value FROM kpi_meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def day(self, day: str) -> tuple[dict[str, Any], bool, dict[str, Any] | None] | None:
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT data, closed, figures FROM kpi_days WHERE day=?", (day,)
            ).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), bool(row[1]), json.loads(row[2]) if row[2] else None

    def days_between(self, first: str, last: str) -> list[tuple[str, dict[str, Any], bool]]:
        with self.db.lock:
            rows = self.db.conn.execute(
                "SELECT day, data, closed FROM kpi_days WHERE day >= ? AND day <= ? ORDER BY day",
                (first, last),
            ).fetchall()
        return [(r[0], json.loads(r[1]), bool(r[2])) for r in rows]

    def open_days(self) -> list[str]:
        with self.db.lock:
            rows = self.db.conn.execute("SELECT day FROM kpi_days WHERE closed=0 ORDER BY day").fetchall()
        return [r[0] for r in rows]

    def day_start(self, day: str) -> dict[str, Any] | None:
        with self.db.lock:
            row = self.db.conn.execute("SELECT state FROM kpi_day_start WHERE day=?", (day,)).fetchone()
        return json.loads(row[0]) if row else None

    def alerts_of(self, day: str) -> list[dict[str, Any]]:
        with self.db.lock:
            rows = self.db.conn.execute(
                "SELECT alert, severity, fired_ts, ack_ts, cleared_ts FROM kpi_alerts WHERE day=?", (day,)
            ).fetchall()
        return [
            {"alert": r[0], "severity": r[1], "fired_ts": r[2], "ack_ts": r[3], "cleared_ts": r[4]}
            for r in rows
        ]

    # ------------------------------------------------------------ one fold step
    def commit(
        self,
        *,
        days: dict[str, dict[str, Any]],
        state: dict[str, Any],
        alert_ops: Iterable[tuple[Any, ...]],
        day_of: Any,
        meta: dict[str, Any] | None = None,
        day_starts: dict[str, dict[str, Any]] | None = None,
        closed: dict[str, dict[str, Any]] | None = None,
        keep_from: str | None = None,
    ) -> None:
        """The touched days, the fold's state (with its position), the alert changes, the day
        closes: all or nothing, so a restart never counts a record twice nor loses one."""
        conn = self.db.conn
        with self.db.lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for day, data in days.items():
                    conn.execute(
                        "INSERT INTO kpi_days(day, data) VALUES(?, ?) "
                        "ON CONFLICT(day) DO UPDATE SET data=excluded.data",
                        (day, json.dumps(data, separators=(",", ":"))),
                    )
                for day, figures in (closed or {}).items():
                    conn.execute(
                        "UPDATE kpi_days SET closed=1, figures=? WHERE day=?",
                        (json.dumps(figures, separators=(",", ":")), day),
                    )
                for day, start in (day_starts or {}).items():
                    conn.execute(
                        "INSERT OR REPLACE INTO kpi_day_start(day, state) VALUES(?, ?)",
                        (day, json.dumps(start, separators=(",", ":"))),
                    )
                for op in alert_ops:
                    _alert_op(conn, op, day_of)
                for key, value in {"state": state, **(meta or {})}.items():
                    conn.execute(
                        "INSERT INTO kpi_meta(key, value) VALUES(?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, json.dumps(value, separators=(",", ":"))),
                    )
                if keep_from is not None:
                    conn.execute("DELETE FROM kpi_days WHERE day < ?", (keep_from,))
                    conn.execute("DELETE FROM kpi_day_start WHERE day < ?", (keep_from,))
                    conn.execute(
                        "DELETE FROM kpi_alert_alias WHERE alert IN (SELECT alert FROM kpi_alerts WHERE day < ?)",
                        (keep_from,),
                    )
                    conn.execute("DELETE FROM kpi_alerts WHERE day < ?", (keep_from,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT has rolled back already
                    conn.execute("ROLLBACK")
                raise

    def set_meta(self, key: str, value: Any) -> None:
        with self.db.lock:
            self.db.conn.execute(
                "INSERT INTO kpi_meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, json.dumps(value, separators=(",", ":"))),
            )

    def replace_day(self, day: str, data: dict[str, Any], figures: dict[str, Any] | None) -> None:
        """A rebuilt day: its accumulators (and its figures when it was closed) replaced."""
        with self.db.lock:
            self.db.conn.execute(
                "UPDATE kpi_days SET data=?, figures=coalesce(?, figures) WHERE day=?",
                (
                    json.dumps(data, separators=(",", ":")),
                    json.dumps(figures, separators=(",", ":")) if figures is not None else None,
                    day,
                ),
            )
            self.db.conn.execute(
                "INSERT OR IGNORE INTO kpi_days(day, data) VALUES(?, ?)",
                (day, json.dumps(data, separators=(",", ":"))),
            )


def restored(state: str, facts: RestoreFacts) -> tuple[list[str], dict[str, Any]]:
    """A restore's step on the state DB it puts back (`Plugin.restored_state`).

    A day is closed, and its `kpi_daily` journaled, at most once per site: a day the replaced
    journal closed after the backup (its kpi_daily is there, above the archive's last seq, and went
    upstream) is marked closed here with the figures it sent, and taken off the days still to be
    announced, so the next start neither closes it again from the backup's records alone nor sends
    a second, partial kpi_daily. The span of time whose records the restored journal lacks (the
    restore's gap) is kept, for a day it touches to say so when it closes (`restore_gap`), where
    the box cannot know whether it was closed (a replacement box restored with --continue-after)
    or it was not closed yet. Returns the lines the restore prints and the days for its event."""
    sent, problem = _sent_days(facts)
    said: list[str] = []
    kept_closed: list[str] = []
    conn = sqlite3.connect(state)
    try:
        with conn:
            if not conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='kpi_days'"
            ).fetchone():
                return [], {}
            announce = _meta(conn, "announce") or []
            for day, (seq, payload) in sorted(sent.items()):
                row = conn.execute("SELECT closed FROM kpi_days WHERE day=?", (day,)).fetchone()
                due = day in announce
                if row is not None and row[0] and not due:
                    continue  # closed and journaled before the backup too
                figures = json.dumps(payload, separators=(",", ":"))
                if row is None:
                    conn.execute(
                        "INSERT INTO kpi_days(day, data, closed, figures) VALUES(?, ?, 1, ?)",
                        (day, json.dumps(new_day(), separators=(",", ":")), figures),
                    )
                elif not row[0]:
                    conn.execute("UPDATE kpi_days SET closed=1, figures=? WHERE day=?", (figures, day))
                kept_closed.append(day)
                said.append(
                    f"KPI day {day} was closed after this backup (kpi_daily at seq {seq}): it stays "
                    "closed, and no second kpi_daily is sent from the backup's records"
                )
            if kept_closed:
                _set_meta(conn, "announce", [d for d in announce if d not in kept_closed])
            if facts.gap_from is not None and facts.gap_until is not None:
                gap = {
                    "from": facts.gap_from,
                    "until": facts.gap_until,
                    "first_seq": facts.gap[0] if facts.gap else None,
                    "last_seq": facts.gap[1] if facts.gap else None,
                    "archive": facts.archive,
                }
                _set_meta(conn, RESTORE_GAPS, [*(_meta(conn, RESTORE_GAPS) or []), gap])
                said.append(
                    "KPI days not closed yet that the restore's gap touches (records journaled after "
                    "the backup, not in the restored journal) close with their figures marked partial "
                    "(restore_gap)"
                )
    finally:
        conn.close()
    if problem:
        said.append(f"warning: {problem}: a KPI day it closed after the backup may be closed again")
    return said, {"kpi_days_kept_closed": kept_closed} if kept_closed else {}


def _sent_days(facts: RestoreFacts) -> tuple[dict[str, tuple[int, dict[str, Any]]], str | None]:
    """The days the replaced journal closed after the archive: day -> (seq, payload) of its first
    kpi_daily above `replaced_after`; and what of them could not be read (None: all could)."""
    if facts.replaced is None:
        return {}, None
    try:
        rows = kind_payloads_after(facts.replaced, "kpi_daily", facts.replaced_after)
    except sqlite3.Error as exc:  # read a moment ago by the restore; said, the restore goes on
        return {}, f"the kpi_daily records of {facts.replaced} cannot be read ({exc})"
    sent: dict[str, tuple[int, dict[str, Any]]] = {}
    unreadable = 0
    for seq, payload in rows:
        try:
            figures = json.loads(payload)
            day = figures["day"]
        except (TypeError, ValueError, KeyError):
            unreadable += 1
            continue
        sent.setdefault(str(day), (int(seq), figures))
    problem = (
        f"{fmt.count(unreadable, 'kpi_daily record')} of {facts.replaced} cannot be read"
        if unreadable
        else None
    )
    return sent, problem


def _meta(conn: sqlite3.Connection, key: str) -> Any:
    row = conn.execute("SELECT value FROM kpi_meta WHERE key=?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def _set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO kpi_meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (key, json.dumps(value, separators=(",", ":"))),
    )


def _repeated(conn: Any, seq: int, ts: float, key: str, firing: str, first: float | None, day: str) -> Any:
    """The alert a fired record repeats (a row), or None when it is an alert of its own.

    A repeat names its first firing: the alert of the same rule and point fired then (whatever
    became of it since: acknowledged, it is still the same incident). Not found (the first firing
    was never journaled, as when the rate limit dropped it, or its day is no longer kept), it joins
    the newest alert of the same rule and point fired since its first firing: an earlier repeat of
    the incident that became its alert. Incidents of one rule and point never overlap, so an alert
    fired between an incident's first firing and its repeat is that incident's. None either, it is
    an alert of its own. An unmarked record (the previous release) joins, as that release counted
    it, the alert of the same rule and point still neither acknowledged nor cleared, but only one
    of the same day: a day never loses an alert to an earlier one."""
    if firing == NEW:
        return None
    if firing == REPEAT and first is not None:
        exact = conn.execute(
            "SELECT alert FROM kpi_alerts WHERE akey=? AND fired_ts BETWEEN ? AND ? AND alert < ? "
            "ORDER BY alert DESC LIMIT 1",
            (key, first - SAME_TS, first + SAME_TS, seq),
        ).fetchone()
        if exact is not None:
            return exact
        return conn.execute(
            "SELECT alert FROM kpi_alerts WHERE akey=? AND fired_ts BETWEEN ? AND ? AND alert < ? "
            "ORDER BY alert DESC LIMIT 1",
            (key, first - SAME_TS, ts, seq),
        ).fetchone()
    if firing == REPEAT:  # a repeat whose first firing the rules engine could not name
        return conn.execute(
            "SELECT alert FROM kpi_alerts WHERE akey=? AND fired_ts <= ? AND alert < ? "
            "ORDER BY alert DESC LIMIT 1",
            (key, ts, seq),
        ).fetchone()
    return conn.execute(
        "SELECT alert FROM kpi_alerts WHERE akey=? AND day=? AND ack_ts IS NULL AND cleared_ts IS NULL "
        "AND alert < ? ORDER BY alert DESC LIMIT 1",
        (key, day, seq),
    ).fetchone()


def _alert_op(conn: Any, op: tuple[Any, ...], day_of: Any) -> None:
    if op[0] == "fired":
        _, seq, ts, source, severity, key, firing, first = op
        day = day_of(ts)
        row = _repeated(conn, seq, ts, key, firing, first, day)
        if row is not None:  # a repeat: the same alert
            conn.execute("INSERT OR IGNORE INTO kpi_alert_alias(alias, alert) VALUES(?, ?)", (seq, row[0]))
            return
        conn.execute(
            "INSERT OR IGNORE INTO kpi_alerts(alert, day, akey, severity, fired_ts) VALUES(?,?,?,?,?)",
            (seq, day, key, severity, ts),
        )
    elif op[0] == "ack":
        _, acked, ts = op
        row = conn.execute("SELECT alert FROM kpi_alert_alias WHERE alias=?", (acked,)).fetchone()
        alert = row[0] if row is not None else acked
        conn.execute("UPDATE kpi_alerts SET ack_ts=? WHERE alert=? AND ack_ts IS NULL", (ts, alert))
    elif op[0] == "cleared":
        # the instance the clear names; and an alert stored before alerts were told apart by
        # their point (its key is the bare source)
        _, source, ts, key = op
        conn.execute(
            "UPDATE kpi_alerts SET cleared_ts=? WHERE cleared_ts IS NULL AND akey IN (?, ?)",
            (ts, key, source),
        )
