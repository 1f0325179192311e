"""The UI's own JSON endpoints: point history for trends, device points with latest values, point
writes (audited), events and alerts with acknowledgements, and a YAML helper for the rule editor.

The live stream (SSE) is in `edge.web.live`, commissioning test-reads in `edge.web.commission`.
The journal has no index on point or kind, so a raw query scans its newest part by `seq` (the
primary key); SCAN_ROWS bounds how far back one looks. Long trends come from the trend index's
buckets and events from its copy of the events (`edge.store.trend`), with the journal's rows after
the index's cursor scanned raw, so the newest data is there at once; without the trend component,
the raw scan answers alone.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge import audit
from edge.api import privacy
from edge.api.auth import require
from edge.api.params import MAX_SEQ
from edge.api.problem import Problem, json_body, json_response, read_json
from edge.model import QUALITY_NAMES, CommandStatus
from edge.store.journal import BOOL_FLAG, row_to_record
from edge.store.trend import TrendIndex, history_buckets
from edge.web.rule_yaml import MAX_BODY_BYTES as MAX_YAML_BODY
from edge.web.rule_yaml import YamlWorker

if TYPE_CHECKING:
    from edge.runtime import Runtime

SCAN_ROWS = 300_000
MAX_LIMIT = 5000
# History, events and alerts queries running at once: each scans in a thread and turns up to
# MAX_LIMIT rows into JSON there, so a loop of them neither blocks the event loop nor takes every
# thread of the default executor the rest of the runtime shares; the others wait their turn.
QUERY_SLOTS = 2
RESOLUTIONS = ("auto", "raw", "minute", "hour")
EVENT_PAGE = 500  # rows fetched per round while skipping acknowledged events (unacked=1)
RAW_SPAN = 3 * 3600.0  # auto answers raw readings for ranges up to this long (when the scan covers them)
ACK_MIGRATIONS = [
    """
    CREATE TABLE ui_acks (
        seq INTEGER PRIMARY KEY,   -- the journal seq of the acknowledged event
        user TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT '',
        ts REAL NOT NULL
    );
    """
]


def _float(request: web.Request, name: str, default: float | None) -> float | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)  # type: ignore[arg-type]
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # nan and inf compare false with every ts, and print as null
        raise Problem(400, f"Bad query parameter {name}", f"{name} is a number (UTC epoch seconds)")
    return value


def _limit(request: web.Request, default: int) -> int:
    try:
        return max(1, min(MAX_LIMIT, int(request.query.get("limit", default))))
    except ValueError:
        raise Problem(400, "Bad query parameter limit", f"an integer from 1 to {MAX_LIMIT}") from None


def point_view(runtime: Runtime, point_id: str, now: float) -> dict[str, Any]:
    info = runtime.hub.points[point_id]
    latest = runtime.hub.latest.get(point_id)
    return {
        "id": point_id,
        "name": info.name,
        "type": str(info.type),
        "unit": info.unit,
        "writable": info.writable,
        "privacy": str(info.privacy),
        "description": info.description,
        "value": latest.value if latest else None,
        "quality": QUALITY_NAMES[latest.quality & 3] if latest else None,
        "ts": latest.ts if latest else None,
        "age_s": round(now - latest.ts, 1) if latest else None,
    }


def setup(app: web.Application, runtime: Runtime) -> None:
    state = runtime.state
    assert state is not None
    state.migrate("ui", ACK_MIGRATIONS)
    journal = runtime.journal

    def scan_floor() -> int:
        """The seq after which the raw scan looks (SCAN_ROWS back from the newest)."""
        return max(0, journal.committed_seq - SCAN_ROWS)

    async def scan(sql_where: str, args: tuple[Any, ...], limit: int, floor: int | None = None) -> list[Any]:
        """The newest `limit` journal rows after `floor` (default: the raw scan's bound) matching."""
        if floor is None:
            floor = scan_floor()
        return await asyncio.to_thread(journal.newest_rows, sql_where, args, floor, limit)

    queries = asyncio.Semaphore(QUERY_SLOTS)

    def bounded(
        handler: Callable[[web.Request], Awaitable[web.Response]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def one_of_the_slots(request: web.Request) -> web.Response:
            async with queries:
                return await handler(request)

        return one_of_the_slots

    async def rendered(build: Callable[[], Any]) -> web.Response:
        """A JSON answer whose rows are turned into records and encoded in a thread: up to
        MAX_LIMIT of them take tens of milliseconds the event loop owes to ingest."""
        body = await asyncio.to_thread(lambda: json_body(build()))
        return web.Response(body=body, content_type="application/json")

    def trend_index() -> TrendIndex | None:
        trend = runtime.components.get("trend")
        return trend if isinstance(trend, TrendIndex) else None

    async def newest_events(
        conds: list[str], args: tuple[Any, ...], limit: int
    ) -> tuple[list[Any], int, int | None]:
        """(the newest `limit` events matching, newest first; the raw scan's lower bound; the trend
        index's cursor or None). `conds` name the source `{source}`. Events up to the cursor come
        from the index, those after it from the journal (at most SCAN_ROWS back), so each is
        listed once whatever the follower's progress."""
        floor = scan_floor()
        trend = trend_index()
        raw_where = " AND ".join(["kind IS NOT NULL", *conds]).format(source="point")
        if trend is None:
            return await scan(raw_where, args, limit, floor), floor, None
        index_where = " AND ".join(conds or ["1"]).format(source="source")
        cursor, indexed = await asyncio.to_thread(trend.read_events, index_where, args, limit)
        lo = max(cursor, floor)
        tail = await scan(raw_where, args, limit, lo)
        return (tail + indexed)[:limit], lo, cursor

    async def history(request: web.Request) -> web.Response:
        """Raw readings, or minute/hour buckets from the trend index (`resolution`, default
        `auto`: raw when the range is short and the raw scan covers it, else buckets)."""
        principal = require(request, "read")
        point = request.query.get("point", "")
        if point not in runtime.hub.points:
            raise Problem(404, "Unknown point", f"no point {point!r}; see /api/v1/devices/{{id}}/points")
        if privacy.minimise_history(runtime, principal, point):
            raise Problem(
                403,
                "Private data",
                f"{point} is {runtime.hub.points[point].privacy}: your role may not see it",
            )
        now = time.time()
        since = _float(request, "since", now - 3600)
        until = _float(request, "until", None)
        assert since is not None
        if until is not None and until < since:
            raise Problem(400, "Bad query parameter until", "until is a time at or after since")
        limit = _limit(request, 1000)
        resolution = request.query.get("resolution") or "auto"
        if resolution not in RESOLUTIONS:
            raise Problem(400, "Bad query parameter resolution", f"one of {', '.join(RESOLUTIONS)}")
        trend = trend_index()
        if trend is None and resolution in ("minute", "hour"):
            raise Problem(503, "No trend index", "the trend index is not running; ask for resolution=raw")
        end = now if until is None else until
        body: dict[str, Any] = {"point": point, "since": since, "until": until}
        if resolution in ("auto", "raw"):
            where, args = "point = ? AND kind IS NULL AND ts >= ?", [point, since]
            if until is not None:
                where += " AND ts <= ?"
                args.append(until)
            raw = resolution == "raw" or trend is None
            if not raw and end - since <= RAW_SPAN:  # short: raw if the scan reaches back to `since`
                floor = scan_floor()
                oldest = await asyncio.to_thread(journal.oldest_after, floor) if floor else None
                raw = oldest is None or oldest <= since
            rows = await scan(where, tuple(args), limit + 1) if raw else []
            if resolution == "raw" or (raw and len(rows) <= limit):

                def readings() -> dict[str, Any]:
                    out = []
                    for _seq, ts, _p, value, quality, *_ in reversed(rows[:limit]):
                        if quality & BOOL_FLAG:
                            value = bool(value)
                        out.append([ts, value, QUALITY_NAMES[quality & 3]])
                    out.sort(key=lambda r: r[0])  # journal order is arrival order; a trend is drawn by time
                    return {**body, "resolution": "raw", "readings": out}

                return await rendered(readings)
            minutes = math.floor(end / 60) - math.floor(since / 60) + 1
            resolution = "minute" if minutes <= limit else "hour"
        assert trend is not None
        buckets = await asyncio.to_thread(
            history_buckets,
            trend,
            point,
            since,
            end,
            resolution == "hour",
            limit,
            scan_floor(),
        )
        body["resolution"] = resolution

        def bucketed() -> dict[str, Any]:
            body["readings"] = [[ts, avg, "good"] for ts, avg, _lo, _hi in buckets]
            body["ranges"] = [[lo, hi] for _ts, _avg, lo, hi in buckets]
            return body

        return await rendered(bucketed)

    async def device_points(request: web.Request) -> web.Response:
        principal = require(request, "read")
        device_id = request.match_info["id"]
        status = next((d for d in runtime.devices_status() if d["id"] == device_id), None)
        if status is None:
            raise Problem(404, "Unknown device", f"no device {device_id!r} in this site")
        now = time.time()
        prefix = device_id + "."
        points = [point_view(runtime, pid, now) for pid in runtime.hub.points if pid.startswith(prefix)]
        for p in points:
            if privacy.minimise_history(runtime, principal, p["id"]):
                p["value"], p["redacted"] = None, p["privacy"]
        return json_response({"device": status, "points": points, "now": now})

    async def write_point(request: web.Request) -> web.Response:
        principal = require(request, "write")
        point = request.match_info["id"]
        body = await read_json(request, 4096)
        if not isinstance(body, dict) or "value" not in body:
            raise Problem(400, "Missing value", 'send {"value": ...}')
        result = await runtime.hub.write(point, body["value"], source=f"user:{principal.name}")
        audit.record(
            state,
            principal.name,
            "point_write",
            point,
            value=body["value"],
            status=str(result.status),
            reason=result.reason,
        )
        status = {CommandStatus.OK: 200, CommandStatus.REJECTED: 422}.get(result.status, 502)
        return json_response(
            {
                "point": point,
                "value": result.value,
                "status": str(result.status),
                "reason": result.reason,
                "duration_ms": round(result.duration_ms, 1),
            },
            status=status,
        )

    def acks_for(seqs: list[int]) -> dict[int, dict[str, Any]]:
        if not seqs:
            return {}
        marks = ",".join("?" * len(seqs))
        with state.lock:
            rows = state.conn.execute(
                f"SELECT seq, user, comment, ts FROM ui_acks WHERE seq IN ({marks})", seqs
            ).fetchall()
        return {r[0]: {"user": r[1], "comment": r[2], "ts": r[3]} for r in rows}

    async def events(request: web.Request) -> web.Response:
        """The newest events matching the filters, newest first; with `unacked`, the newest
        unacknowledged ones (acknowledged events are skipped page by page, not cut after `limit`)."""
        principal = require(request, "read")
        conds: list[str] = []
        args: list[Any] = []
        for key, col in (("kind", "kind"), ("severity", "severity"), ("source", "{source}")):
            if request.query.get(key):
                conds.append(f"{col} = ?")
                args.append(request.query[key])
        since = _float(request, "since", None)
        if since is not None:
            conds.append("ts >= ?")
            args.append(since)
        limit = _limit(request, 200)
        unacked = request.query.get("unacked") in ("1", "true")
        page = max(limit, EVENT_PAGE) if unacked else limit
        rows, scanned_from, indexed_to = await newest_events(conds, tuple(args), page)
        acks = await asyncio.to_thread(acks_for, [r[0] for r in rows])
        if unacked:
            kept = [r for r in rows if r[0] not in acks]
            while len(kept) < limit and len(rows) == page:  # more may be older than this page
                rows, _, _ = await newest_events([*conds, "seq < ?"], (*args, rows[-1][0]), page)
                acked = await asyncio.to_thread(acks_for, [r[0] for r in rows])
                kept += [r for r in rows if r[0] not in acked]
            rows = kept[:limit]

        def listed() -> dict[str, Any]:
            records = privacy.minimise(runtime, principal, [row_to_record(r) for r in rows])
            for r in records:
                r["ack"] = acks.get(r["seq"])
            return {"events": records, "scanned_from_seq": scanned_from, "indexed_to_seq": indexed_to}

        return await rendered(listed)

    async def active_alerts(request: web.Request) -> web.Response:
        """Alerts whose latest state per rule is `fired` (not yet cleared): per source, the newest
        alert in the trend index's events or, when newer, in the journal after its cursor."""
        principal = require(request, "read")
        trend = trend_index()
        if trend is None:
            rows = await scan("kind = 'alert'", (), MAX_LIMIT)
        else:
            cursor, indexed = await asyncio.to_thread(trend.latest_events, "alert")
            floor = max(cursor, scan_floor())
            rows = await scan("kind = 'alert'", (), MAX_LIMIT, floor) + indexed

        def current() -> dict[str, Any]:
            latest: dict[str, dict[str, Any]] = {}
            for r in rows:  # newest first: the first seen per source is its current state
                rec = row_to_record(r)
                latest.setdefault(rec["source"], rec)
            active = [r for r in latest.values() if r["payload"].get("state", "fired") == "fired"]
            active = privacy.minimise(runtime, principal, active)  # after the state is read from it
            acks = acks_for([r["seq"] for r in active])
            for r in active:
                r["ack"] = acks.get(r["seq"])
            return {"alerts": active}

        return await rendered(current)

    async def ack(request: web.Request) -> web.Response:
        principal = require(request, "write")
        try:
            seq = int(request.match_info["seq"])
        except ValueError:
            raise Problem(400, "Bad seq", "the event's journal seq is an integer") from None
        if not 1 <= seq <= MAX_SEQ:  # SQLite integers stop at 64 bits
            raise Problem(400, "Bad seq", f"the event's journal seq is an integer from 1 to {MAX_SEQ}")
        body = await read_json(request, 8192)
        comment = body.get("comment", "") if isinstance(body, dict) else None
        if not isinstance(comment, str) or len(comment) > 2000:
            raise Problem(400, "Bad comment", 'send {"comment": "..."} (up to 2000 characters)')
        kind = await asyncio.to_thread(journal.kind_of, seq)
        trend = trend_index()
        if kind is None and trend is not None:  # listed from the index: the journal may have
            # deleted it (max_bytes) while the index keeps it for keep_history
            _, indexed = await asyncio.to_thread(trend.read_events, "seq = ?", (seq,), 1)
            kind = indexed[0][5] if indexed else None
        if kind is None:
            raise Problem(404, "No such event", f"no event with seq {seq} in the local journal")
        with state.lock:
            state.conn.execute(
                "INSERT INTO ui_acks(seq, user, comment, ts) VALUES (?,?,?,?) "
                "ON CONFLICT(seq) DO UPDATE SET user=excluded.user, comment=excluded.comment, ts=excluded.ts",
                (seq, principal.name, comment, time.time()),
            )
        audit.record(state, principal.name, "alert_ack", str(seq), kind=kind, comment=comment)
        return json_response({"seq": seq, "ack": {"user": principal.name, "comment": comment}})

    yaml_worker = YamlWorker()
    app.on_cleanup.append(yaml_worker.close)

    async def yaml_helper(request: web.Request) -> web.Response:
        """{"text": YAML} → {"data"} (with a located error), or {"data"} → {"text"}: the rule editor
        edits YAML and there is no YAML parser in a browser without a build step. The conversion
        runs in `rule_yaml`'s worker process, never on the event loop."""
        require(request, "read")
        body = await read_json(request, MAX_YAML_BODY)
        if isinstance(body, dict) and isinstance(body.get("text"), str):
            status, out = await yaml_worker.run("text", body["text"])
        elif isinstance(body, dict) and "data" in body:
            status, out = await yaml_worker.run("data", body["data"])
        else:
            raise Problem(400, "Expected text or data", 'send {"text": "yaml"} or {"data": {...}}')
        # a located YAML error is a problem document too, but stays application/json: the rule
        # editor and the API description have always read its `error` from that
        return web.Response(status=status, body=out, content_type="application/json")

    r = app.router
    r.add_get("/api/v1/history", bounded(history))
    r.add_get("/api/v1/devices/{id}/points", device_points)
    r.add_post("/api/v1/points/{id}/write", write_point)
    r.add_get("/api/v1/events", bounded(events))
    r.add_get("/api/v1/alerts/active", bounded(active_alerts))
    r.add_post("/api/v1/alerts/{seq}/ack", ack)
    r.add_post("/api/v1/ui/yaml", yaml_helper)
