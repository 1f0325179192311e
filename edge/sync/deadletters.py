"""The sync tables in the state DB: dead letters (records a receiver rejected as bad content) and
the last status snapshot of each sink (read by `edge sync status` while the gateway runs)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from edge.state import StateDB

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


def ensure(state: StateDB) -> None:
    state.migrate("sync", MIGRATIONS)


def add(
    state: StateDB, sink: str, seq: int, record: dict[str, Any], status: int | None, response: str
) -> None:
    with state.lock:
        state.conn.execute(
            "INSERT INTO sync_dead_letters(sink, seq, record, status, response, ts) VALUES (?,?,?,?,?,?)",
            (sink, seq, orjson.dumps(record).decode(), status, response[:2000], time.time()),
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
