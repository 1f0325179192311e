"""The sync tables in the state DB: dead letters (records a receiver rejected as bad content) and
the last status snapshot of each sink (read by `edge sync status` while the gateway runs).

Every statement against these tables is here: the routes (`edge.sync.api`), the sinks and the CLI
call these functions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from edge.state import StateDB
from edge.store.rows import sealer_for

MIGRATIONS = [
    """
    CREATE TABLE sync_dead_letters (
        id INTEGER PRIMARY KEY,
        sink TEXT NOT NULL,
        seq INTEGER NOT NULL,
        record TEXT NOT NULL,         -- the record as JSON (pull-API shape)
        status INTEGER,               -- the HTTP status that rejected it
        response TEXT NOT NULL,       -- the start of the response body
        ts REAL NOT NULL,
        retried REAL                  -- when a manual retry delivered it
    );
    CREATE INDEX sync_dead_letters_sink ON sync_dead_letters(sink, id);
    CREATE TABLE sync_status (sink TEXT PRIMARY KEY, status TEXT NOT NULL, updated REAL NOT NULL);
    """
]


COMPONENT = "sync"  # the tables' owner in the state DB's migrations


def ensure(state: StateDB) -> None:
    state.migrate(COMPONENT, MIGRATIONS)


def _created(state: StateDB) -> bool:
    """The tables exist: a site that never ran a sink has none (and listing them is not an error)."""
    return state.version(COMPONENT) > 0


@dataclass(frozen=True)
class DeadLetter:
    """One stored dead letter, as a manual retry needs it."""

    id: int
    sink: str
    record: dict[str, Any]  # the pull-API shape
    retried: float | None  # when a manual retry delivered it, None while pending


def listing(state: StateDB, sink: str | None, before: int | None, limit: int) -> list[dict[str, Any]]:
    """The newest dead letters first (of `sink` only when given; ids below `before` when given),
    at most `limit`, in the shape of `GET /api/v1/sync/dead-letters`."""
    if not _created(state):
        return []
    sql = "SELECT id, sink, seq, record, status, response, ts, retried FROM sync_dead_letters WHERE 1=1"
    args: list[Any] = []
    if sink:
        sql += " AND sink=?"
        args.append(sink)
    if before:
        sql += " AND id<?"
        args.append(before)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    with state.lock:
        rows = state.conn.execute(sql, args).fetchall()
    # the state DB's rows are sqlite3.Row: keyed by the SELECT's column names, in its order
    return [{**dict(r), "record": _record(state, r["record"], r["sink"], r["seq"])} for r in rows]


def _where(sink: str, seq: int) -> str:
    """What a sealed dead letter is bound to: it opens only as this sink's record `seq`."""
    return f"dead letter\x00{sink}\x00{int(seq)}"


def _record(state: StateDB, stored: str | bytes, sink: str, seq: int) -> Any:
    """A stored record: personal and sensitive ones are sealed (opened where the gateway holds the
    keys)."""
    if type(stored) is not bytes:  # stored in clear: a site without privacy never loads its code
        return orjson.loads(stored)
    from edge.privacy.atrest import open_record

    return open_record(state.path, stored, _where(sink, seq))


def one(state: StateDB, dead_letter_id: int) -> DeadLetter | None:
    """The dead letter `dead_letter_id`, None when there is no such one."""
    if not _created(state):
        return None
    with state.lock:
        row = state.conn.execute(
            "SELECT sink, record, retried, seq FROM sync_dead_letters WHERE id=?", (dead_letter_id,)
        ).fetchone()
    if row is None:
        return None
    return DeadLetter(dead_letter_id, row[0], _record(state, row[1], row[0], row[3]), row[2])


def mark_retried(state: StateDB, dead_letter_id: int) -> None:
    """A manual retry delivered it: it no longer counts as pending."""
    with state.lock:
        state.conn.execute("UPDATE sync_dead_letters SET retried=? WHERE id=?", (time.time(), dead_letter_id))


def add(
    state: StateDB, sink: str, seq: int, record: dict[str, Any], status: int | None, response: str
) -> None:
    stored: str | bytes = orjson.dumps(record).decode()
    sealer = sealer_for(state.path)
    if sealer is not None:  # this process seals: the privacy component has loaded its code
        from edge.privacy.atrest import Sealer

        if isinstance(sealer, Sealer) and sealer.is_private(record):
            # a receiver's answer may quote what it rejected: a personal or sensitive record's is
            # not kept
            stored, response = sealer.seal_record(record, _where(sink, seq)), ""
    with state.lock:
        state.conn.execute(
            "INSERT INTO sync_dead_letters(sink, seq, record, status, response, ts) VALUES (?,?,?,?,?,?)",
            (sink, seq, stored, status, response[:2000], time.time()),
        )


def pending(state: StateDB, sink: str) -> int:
    """Dead letters of `sink` not yet delivered by a manual retry."""
    with state.lock:
        row = state.conn.execute(
            "SELECT count(*) FROM sync_dead_letters WHERE sink=? AND retried IS NULL", (sink,)
        ).fetchone()
    return int(row[0])


def save_status(state: StateDB, sink: str, status: dict[str, Any]) -> None:
    with state.lock:
        state.conn.execute(
            "INSERT INTO sync_status(sink, status, updated) VALUES (?,?,?) "
            "ON CONFLICT(sink) DO UPDATE SET status=excluded.status, updated=excluded.updated",
            (sink, orjson.dumps(status).decode(), time.time()),
        )
