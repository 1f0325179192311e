"""Sync status routes: `GET /api/v1/sync`, the dead-letter list and a manual dead-letter retry."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from edge.api import keys
from edge.api.auth import require
from edge.api.params import MAX_SEQ, int_param
from edge.api.problem import Problem, json_response
from edge.store.journal import BOOL_FLAG
from edge.store.records import Row

if TYPE_CHECKING:
    from edge.runtime import Runtime
    from edge.sync.component import SyncComponent


def record_to_row(record: dict[str, Any]) -> Row:
    """A record in the pull-API shape back to a raw journal row (for re-sending a dead letter)."""
    if record.get("type") == "reading":
        value = record["value"]
        quality = ("good", "bad", "stale").index(record["quality"])
        if value is True or value is False:
            quality |= BOOL_FLAG
            value = int(value)
        return (record["seq"], record["ts"], record["point"], value, quality, None, None, None)
    payload = orjson.dumps(record.get("payload") or {}).decode()
    return (
        record["seq"],
        record["ts"],
        record["source"],
        None,
        None,
        record["kind"],
        record["severity"],
        payload,
    )


def _component(runtime: Runtime) -> SyncComponent | None:
    return runtime.components.get("sync")  # type: ignore[return-value]


async def sync_status(request: web.Request) -> web.Response:
    require(request, "read")
    comp = _component(keys.get_runtime(request))
    return json_response(comp.status() if comp is not None else {"sinks": [], "consumers": []})


async def dead_letters(request: web.Request) -> web.Response:
    require(request, "read")
    sink = request.query.get("sink")
    limit = int_param(request, "limit", 100, 1, 1000)
    before = int_param(request, "before", None, 1, MAX_SEQ)
    state = keys.get_runtime(request).state
    if state is None or state.version("sync") == 0:
        return json_response({"dead_letters": []})
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
    out = [
        {
            "id": r[0],
            "sink": r[1],
            "seq": r[2],
            "record": orjson.loads(r[3]),
            "status": r[4],
            "response": r[5],
            "ts": r[6],
            "retried": r[7],
        }
        for r in rows
    ]
    return json_response({"dead_letters": out})


async def retry(request: web.Request) -> web.Response:
    principal = require(request, "write")
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise Problem(400, "Invalid id", f"dead-letter id {raw[:40]!r} must be a positive integer")
    runtime = keys.get_runtime(request)
    state = runtime.state
    row = None
    if state is not None and state.version("sync") > 0:
        with state.lock:
            row = state.conn.execute(
                "SELECT sink, record, retried FROM sync_dead_letters WHERE id=?", (int(raw),)
            ).fetchone()
    if row is None:
        raise Problem(404, "Not found", f"no dead letter {raw}")
    comp = _component(runtime)
    sink = comp.sinks.get(row[0]) if comp is not None else None
    if sink is None:
        raise Problem(409, "Sink not running", f"upstream {row[0]!r} is not configured or disabled")
    if row[2] is not None:
        return json_response({"id": int(raw), "delivered": True, "already": True})
    outcome = await sink.send_one(record_to_row(orjson.loads(row[1])))
    if not outcome.ok:
        raise Problem(
            502,
            "Receiver rejected the record again",
            outcome.error or outcome.body[:500],
            receiver_status=outcome.status,
        )
    assert state is not None
    with state.lock:
        state.conn.execute("UPDATE sync_dead_letters SET retried=? WHERE id=?", (time.time(), int(raw)))
    sink.dead_letter_resolved()
    from edge.audit import record

    record(state, principal.name, "sync.dead_letter.retry", row[0], dead_letter=int(raw))
    return json_response({"id": int(raw), "delivered": True, "status": outcome.status})


ROUTES = [
    web.get("/api/v1/sync", sync_status),
    web.get("/api/v1/sync/dead-letters", dead_letters),
    web.post("/api/v1/sync/dead-letters/{id}/retry", retry),
]


def setup(app: web.Application, runtime: Runtime) -> None:
    app.router.add_routes(ROUTES)
