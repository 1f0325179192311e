"""The audit log: who logged in, changed a rule, wrote a point, created a token — in the state DB."""

from __future__ import annotations

import json
import time
from typing import Any

from edge.state import StateDB

MIGRATIONS = [
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,      -- user name, token name, 'rule:<id>', 'system'
        action TEXT NOT NULL,     -- e.g. login, login_failed, rule_update, point_write, token_create
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_ts ON audit(ts);
    """
]


def ensure(state: StateDB) -> None:
    state.migrate("audit", MIGRATIONS)


def record(state: StateDB, actor: str, action: str, target: str = "", **detail: Any) -> None:
    ensure(state)
    with state.lock:
        state.conn.execute(
            "INSERT INTO audit(ts, actor, action, target, detail) VALUES (?,?,?,?,?)",
            (time.time(), actor, action, target, json.dumps(detail, ensure_ascii=False, default=str)),
        )


def entries(state: StateDB, limit: int = 200, before_id: int | None = None) -> list[dict[str, Any]]:
    ensure(state)
    sql = "SELECT id, ts, actor, action, target, detail FROM audit"
    args: tuple[Any, ...] = ()
    if before_id is not None:
        sql += " WHERE id < ?"
        args = (before_id,)
    sql += " ORDER BY id DESC LIMIT ?"
    with state.lock:
        rows = state.conn.execute(sql, (*args, limit)).fetchall()
    return [
        {"id": r[0], "ts": r[1], "actor": r[2], "action": r[3], "target": r[4], "detail": json.loads(r[5])}
        for r in rows
    ]
