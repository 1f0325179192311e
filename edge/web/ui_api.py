"""The UI's own JSON endpoints: point history for trends, device points with latest values, point
writes (audited), events and alerts with acknowledgements, and a YAML helper for the rule editor.

The live stream (SSE) is in `edge.web.live`, commissioning test-reads in `edge.web.commission`.
The journal has no index on point or kind, so a raw query scans its newest part by `seq` (the
primary key); SCAN_ROWS bounds how far back one looks. Long trends come from the trend index's
buckets and events from its copy of the events (`edge.store.trend`), with the journal's rows after
the index's cursor scanned raw, so the newest data is there at once; without the trend component,
the raw scan answers alone.

An acknowledgement's user and comment are personal data, kept in the state DB (`ui_acks`). With a
master key they are sealed there, as the journal seals the `alert_ack` event, under the data key
of the user who acknowledged (`edge.privacy.atrest`): forgetting that user shreds them too, and
they then read as erased. Rows stored in clear before the key was set are sealed at start.
An alert is acknowledged once: a second acknowledgement is refused (409, saying the first) and
neither stored, audited nor journaled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from edge import audit
from edge.api import keys, privacy
from edge.api.auth import Principal, require
from edge.api.params import MAX_SEQ, int_param, path_int
from edge.api.problem import Problem, json_body, json_response, read_json
from edge.model import PRIVACY_RANK, QUALITY_NAMES, CommandStatus, Event, Privacy, Severity, event_privacy
from edge.state import StateDB
from edge.store.journal import BOOL_FLAG, Journal, row_to_record
from edge.store.rows import ERASED_PAYLOAD, EventMatch, sealer_for
from edge.store.trend import TrendIndex, history_buckets, newest_events
from edge.web.rule_yaml import MAX_BODY_BYTES as MAX_YAML_BODY
from edge.web.rule_yaml import YamlWorker

if TYPE_CHECKING:
    from edge.runtime import Runtime

log = logging.getLogger(__name__)
SCAN_ROWS = 300_000
MAX_LIMIT = 5000
# History, events and alerts queries running at once: each scans in a thread and turns up to
# MAX_LIMIT rows into JSON there, so a loop of them neither blocks the event loop nor takes every
# thread of the default executor the rest of the runtime shares; the others wait their turn.
QUERY_SLOTS = 2
RESOLUTIONS = ("auto", "raw", "minute", "hour")
ERASED = orjson.loads(ERASED_PAYLOAD)  # a record's payload once its subject is forgotten
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
    """,
    # an acknowledgement names its user and may say anything in its comment: personal, or the
    # acked event's class when that is higher; it expires at that class's retention (expire_acks)
    "ALTER TABLE ui_acks ADD COLUMN privacy INTEGER NOT NULL DEFAULT 1",
    # with a master key: {"user", "comment"} sealed under the user's data key (user and comment
    # are then empty), so a forget of that user reaches the state DB and its backups
    "ALTER TABLE ui_acks ADD COLUMN sealed BLOB",
]
#: the history, events and alerts queries allowed to run at once (QUERY_SLOTS)
QUERY_SLOTS_KEY: web.AppKey[asyncio.Semaphore] = web.AppKey("ui.query_slots", asyncio.Semaphore)
YAML_WORKER_KEY: web.AppKey[YamlWorker] = web.AppKey("ui.yaml_worker", YamlWorker)


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
    limit = int_param(request, "limit", default, 1, MAX_LIMIT)
    assert limit is not None
    return limit


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
        # decimals the UI rounds to (declared by the point or its profile; else derived from the unit)
        "precision": info.precision,
        "value": latest.value if latest else None,
        "quality": QUALITY_NAMES[latest.quality & 3] if latest else None,
        "ts": latest.ts if latest else None,
        "age_s": round(now - latest.ts, 1) if latest else None,
    }


def _route(request: web.Request) -> str:
    return privacy.route_of(request.method, request.path)


def _state(runtime: Runtime) -> StateDB:
    state = runtime.state
    assert state is not None, "the state DB opens before the web server"
    return state


def _scan_floor(journal: Journal) -> int:
    """The seq after which the raw scan looks (SCAN_ROWS back from the newest)."""
    return max(0, journal.committed_seq - SCAN_ROWS)


def _trend_index(runtime: Runtime) -> TrendIndex | None:
    return runtime.component(TrendIndex)


async def _rendered(build: Callable[[], Any]) -> web.Response:
    """A JSON answer whose rows are turned into records and encoded in a thread: up to
    MAX_LIMIT of them take tens of milliseconds the event loop owes to ingest."""
    body = await asyncio.to_thread(lambda: json_body(build()))
    return web.Response(body=body, content_type="application/json")


async def _newest_events(
    runtime: Runtime, match: EventMatch, limit: int
) -> tuple[list[Any], int, int | None]:
    """(the newest `limit` events that `match`, newest first; the raw scan's lower bound; the
    trend index's cursor or None): `edge.store.trend.newest_events`, at most SCAN_ROWS back."""
    journal = runtime.journal
    trend = _trend_index(runtime)
    return await asyncio.to_thread(newest_events, journal, trend, match, limit, _scan_floor(journal))


def _ack_where(seq: int) -> str:
    """What a sealed acknowledgement is bound to: it opens only as the acknowledgement of `seq`."""
    return f"alert ack\x00{int(seq)}"


def _stored_ack(
    state: StateDB, seq: int, user: str, comment: str, ts: float
) -> tuple[str, str, bytes | None]:
    """(user, comment, sealed) as `ui_acks` keeps them: sealed under `user`'s data key, as the
    journal seals the `alert_ack` event, when this process seals for the state DB; else in clear."""
    sealer = sealer_for(state.path)
    if sealer is None:
        return user, comment, None
    text = orjson.dumps({"user": user, "comment": comment}).decode()
    return "", "", sealer.seal_payload({"user": user}, text, ts, _ack_where(seq))


def _opened_ack(state: StateDB, seq: int, ts: float, sealed: bytes) -> dict[str, Any]:
    """A sealed acknowledgement's user and comment; `erased` when its user was forgotten, `sealed`
    when this process holds no key that opens it."""
    sealer = sealer_for(state.path)
    if sealer is None:
        return {"sealed": True}
    try:
        opened = orjson.loads(sealer.open_text(sealed, "payload", ts, _ack_where(seq)))
    except LookupError:  # the user was forgotten
        return {"erased": True}
    except ValueError:  # altered, or another site's keys
        return {"sealed": True}
    return {"user": opened["user"], "comment": opened["comment"]}


def seal_clear_acks(state: StateDB) -> int:
    """Seal the acknowledgements stored in clear (before the site had a master key), overwriting
    the clear text in the file; returns how many. Nothing without a master key."""
    if sealer_for(state.path) is None:
        return 0
    with state.lock:
        rows = state.conn.execute(
            "SELECT seq, user, comment, ts FROM ui_acks WHERE sealed IS NULL"
        ).fetchall()
        if not rows:
            return 0
        # the old text is zeroed where it stood, and the WAL's copies of those pages go with it
        secure = state.conn.execute("PRAGMA secure_delete").fetchone()[0]
        state.conn.execute("PRAGMA secure_delete=ON")
        try:
            state.conn.execute("BEGIN IMMEDIATE")
            try:
                for seq, user, comment, ts in rows:
                    stored = _stored_ack(state, seq, user, comment, ts)
                    state.conn.execute(
                        "UPDATE ui_acks SET user=?, comment=?, sealed=? WHERE seq=?", (*stored, seq)
                    )
                state.conn.execute("COMMIT")
            except BaseException:
                if state.conn.in_transaction:  # a failed COMMIT has rolled back already
                    state.conn.execute("ROLLBACK")
                raise
            state.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            state.conn.execute(f"PRAGMA secure_delete={int(secure)}")
    return len(rows)


def _acks_for(state: StateDB, seqs: list[int]) -> dict[int, dict[str, Any]]:
    if not seqs:
        return {}
    # the seqs as one JSON parameter: one statement shape for any page (each stays compiled)
    with state.lock:
        rows = state.conn.execute(
            "SELECT seq, user, comment, ts, privacy, sealed FROM ui_acks "
            "WHERE seq IN (SELECT value FROM json_each(?))",
            (orjson.dumps(seqs).decode(),),
        ).fetchall()
    acks = {}
    for seq, user, comment, ts, rank, sealed in rows:
        who = {"user": user, "comment": comment} if sealed is None else _opened_ack(state, seq, ts, sealed)
        acks[seq] = {**who, "ts": ts, "privacy": rank}
    return acks


def _shown_acks(
    principal: Principal,
    records: list[dict[str, Any]],
    acks: dict[int, dict[str, Any]],
    counts: privacy.ReadCounts,
) -> None:
    """Each record's acknowledgement as the caller may see it: who and the comment up to the
    caller's class (counted as read), else only that and when it was acknowledged."""
    limit = privacy.limit_for(principal)
    for r in records:
        ack = acks.get(r["seq"])
        if ack is None:
            r["ack"] = None
            continue
        rank = ack["privacy"]
        if rank <= limit and "user" in ack:
            privacy.count_read(counts, rank)
            r["ack"] = {"user": ack["user"], "comment": ack["comment"], "ts": ack["ts"]}
        elif rank <= limit:  # erased (its user forgotten), or sealed where no key opens it
            r["ack"] = {"ts": ack["ts"], **{k: v for k, v in ack.items() if k in ("erased", "sealed")}}
        else:
            r["ack"] = {"ts": ack["ts"], "redacted": str(RANK_CLASS[rank])}


def _shown_by_filter(
    runtime: Runtime, principal: Principal, rows: list[Any], fields: tuple[str, ...]
) -> list[Any]:
    """The event rows whose `fields` (the ones a query filters on) the caller sees: a row whose
    severity or source the redaction hides never matches a filter on it, so which rows a filtered
    page holds says nothing of what was hidden."""
    records = privacy.minimise(runtime, principal, [row_to_record(r) for r in rows])
    return [row for row, rec in zip(rows, records, strict=True) if privacy.redacted_match([rec], *fields)]


async def history(request: web.Request) -> web.Response:
    """Raw readings, or minute/hour buckets from the trend index (`resolution`, default
    `auto`: raw when the range is short and the raw scan covers it, else buckets)."""
    async with request.app[QUERY_SLOTS_KEY]:
        return await _history(request, keys.get_runtime(request))


async def _history(request: web.Request, runtime: Runtime) -> web.Response:
    principal = require(request, "read")
    journal = runtime.journal
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
    trend = _trend_index(runtime)
    if trend is None and resolution in ("minute", "hour"):
        raise Problem(503, "No trend index", "the trend index is not running; ask for resolution=raw")
    end = now if until is None else until
    body: dict[str, Any] = {"point": point, "since": since, "until": until}
    if resolution in ("auto", "raw"):
        raw = resolution == "raw" or trend is None
        if not raw and end - since <= RAW_SPAN:  # short: raw if the scan reaches back to `since`
            floor = _scan_floor(journal)
            oldest = await asyncio.to_thread(journal.oldest_after, floor) if floor else None
            raw = oldest is None or oldest <= since
        rows: list[Any] = []
        if raw:
            rows = await asyncio.to_thread(
                journal.newest_readings, point, since, until, _scan_floor(journal), limit + 1
            )
        if resolution == "raw" or (raw and len(rows) <= limit):

            def readings() -> dict[str, Any]:
                out = []
                for _seq, ts, _p, value, quality, *_ in reversed(rows[:limit]):
                    if quality & BOOL_FLAG:
                        value = bool(value)
                    out.append([ts, value, QUALITY_NAMES[quality & 3]])
                out.sort(key=lambda r: r[0])  # journal order is arrival order; a trend is drawn by time
                return {**body, "resolution": "raw", "readings": out}

            response = await _rendered(readings)
            counts: privacy.ReadCounts = Counter()
            privacy.count_read(counts, privacy.point_rank(runtime, point), min(len(rows), limit))
            await privacy.audit_reads(runtime, principal, _route(request), counts)
            return response
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
        _scan_floor(journal),
    )
    body["resolution"] = resolution

    def bucketed() -> dict[str, Any]:
        body["readings"] = [[ts, avg, "good"] for ts, avg, _lo, _hi in buckets]
        body["ranges"] = [[lo, hi] for _ts, _avg, lo, hi in buckets]
        return body

    response = await _rendered(bucketed)
    bucket_counts: privacy.ReadCounts = Counter()
    privacy.count_read(bucket_counts, privacy.point_rank(runtime, point), len(buckets))
    await privacy.audit_reads(runtime, principal, _route(request), bucket_counts)
    return response


async def device_points(request: web.Request) -> web.Response:
    principal = require(request, "read")
    runtime = keys.get_runtime(request)
    device_id = request.match_info["id"]
    status = next((d for d in runtime.devices_status() if d["id"] == device_id), None)
    if status is None:
        raise Problem(404, "Unknown device", f"no device {device_id!r} in this site")
    now = time.time()
    prefix = device_id + "."
    points = [point_view(runtime, pid, now) for pid in runtime.hub.points if pid.startswith(prefix)]
    counts: privacy.ReadCounts = Counter()
    for p in points:
        if privacy.minimise_history(runtime, principal, p["id"]):
            p["value"], p["redacted"] = None, p["privacy"]
        elif p.get("value") is not None:
            privacy.count_read(counts, privacy.point_rank(runtime, p["id"]))
    await privacy.audit_reads(runtime, principal, _route(request), counts)
    return json_response({"device": status, "points": points, "now": now})


def _privacy_of(runtime: Runtime, point: str) -> Any:
    info = runtime.hub.points.get(point)
    return info.privacy if info is not None else None


async def write_point(request: web.Request) -> web.Response:
    principal = require(request, "write")
    runtime = keys.get_runtime(request)
    point = request.match_info["id"]
    body = await read_json(request, 4096)
    if not isinstance(body, dict) or "value" not in body:
        raise Problem(400, "Missing value", 'send {"value": ...}')
    result = await runtime.hub.write(point, body["value"], source=f"user:{principal.name}")
    klass = _privacy_of(runtime, point)
    audit.record(
        _state(runtime),
        principal.name,
        "point_write",
        point,
        **audit.written_value(klass, body["value"]),
        status=str(result.status),
        reason=audit.written_reason(klass, result.reason),
    )
    status = {CommandStatus.OK: 200, CommandStatus.REJECTED: 422}.get(result.status, 502)
    above = privacy.minimise_history(runtime, principal, point)  # the caller may not read it
    return json_response(
        {
            "point": point,
            "value": result.value,
            "status": str(result.status),
            "reason": audit.written_reason(klass, result.reason) if above else result.reason,
            "duration_ms": round(result.duration_ms, 1),
        },
        status=status,
    )


async def events(request: web.Request) -> web.Response:
    """The newest events matching the filters, newest first; with `unacked`, the newest
    unacknowledged ones (acknowledged events are skipped page by page, not cut after `limit`)."""
    async with request.app[QUERY_SLOTS_KEY]:
        return await _events(request, keys.get_runtime(request))


async def _events(request: web.Request, runtime: Runtime) -> web.Response:
    principal = require(request, "read")
    state = _state(runtime)
    match = EventMatch(
        kind=request.query.get("kind") or None,
        severity=request.query.get("severity") or None,
        source=request.query.get("source") or None,
        since=_float(request, "since", None),
        before_seq=int_param(request, "before", None, 1, MAX_SEQ),  # the next page back
    )
    limit = _limit(request, 200)
    unacked = request.query.get("unacked") in ("1", "true")
    filtered = tuple(f for f in ("severity", "source") if getattr(match, f) is not None)
    # skipped rows are made up for page by page, not cut after `limit`: acknowledged ones (unacked)
    # and, under a severity or source filter, those whose filtered field the caller may not see
    page = max(limit, EVENT_PAGE) if unacked or filtered else limit
    rows, scanned_from, indexed_to = await _newest_events(runtime, match, page)
    kept: list[Any] = []
    while True:
        got = rows
        if filtered:
            got = await asyncio.to_thread(_shown_by_filter, runtime, principal, got, filtered)
        if unacked:
            acked = await asyncio.to_thread(_acks_for, state, [r[0] for r in got])
            got = [r for r in got if r[0] not in acked]
        kept += got
        if len(kept) >= limit or len(rows) < page:  # enough, or nothing older matches
            break
        older = dataclasses.replace(match, before_seq=rows[-1][0])
        rows, _, _ = await _newest_events(runtime, older, page)
    rows = kept[:limit]
    acks = await asyncio.to_thread(_acks_for, state, [r[0] for r in rows])

    counts: privacy.ReadCounts = Counter()

    def listed() -> dict[str, Any]:
        records = privacy.minimise(runtime, principal, [row_to_record(r) for r in rows], counts)
        _shown_acks(principal, records, acks, counts)
        return {"events": records, "scanned_from_seq": scanned_from, "indexed_to_seq": indexed_to}

    response = await _rendered(listed)
    await privacy.audit_reads(runtime, principal, _route(request), counts)
    return response


async def active_alerts(request: web.Request) -> web.Response:
    """Alerts whose latest state is `fired` (not yet cleared): per source and point (a pattern
    rule's alert per matching point), the newest alert in the trend index's events or, when
    newer, in the journal after its cursor."""
    async with request.app[QUERY_SLOTS_KEY]:
        return await _active_alerts(request, keys.get_runtime(request))


async def _active_alerts(request: web.Request, runtime: Runtime) -> web.Response:
    principal = require(request, "read")
    state = _state(runtime)
    journal = runtime.journal
    alerts = EventMatch(kind="alert")
    trend = _trend_index(runtime)
    if trend is None:
        rows = await asyncio.to_thread(journal.newest_events, alerts, _scan_floor(journal), MAX_LIMIT)
    else:
        cursor, indexed = await asyncio.to_thread(trend.latest_events, "alert")
        floor = max(cursor, _scan_floor(journal))
        rows = await asyncio.to_thread(journal.newest_events, alerts, floor, MAX_LIMIT) + indexed

    def current() -> dict[str, Any]:
        latest: dict[tuple[str, Any], dict[str, Any]] = {}
        for row in rows:  # newest first: the first seen per alert is its current state
            rec = row_to_record(row)
            if rec["payload"] == ERASED:
                # its subject was forgotten: which alert it was (its point) and whether it fired or
                # cleared are gone with its payload; it is no alert's current state
                continue
            # one alert per rule and point: a pattern rule fires and clears per matching point
            point = rec["payload"].get("point") if isinstance(rec["payload"], dict) else None
            latest.setdefault((rec["source"], point if isinstance(point, str) else None), rec)
        active = [r for r in latest.values() if r["payload"].get("state", "fired") == "fired"]
        active = privacy.minimise(runtime, principal, active, counts)  # after the state is read from it
        _shown_acks(principal, active, _acks_for(state, [r["seq"] for r in active]), counts)
        return {"alerts": active}

    counts: privacy.ReadCounts = Counter()
    response = await _rendered(current)
    await privacy.audit_reads(runtime, principal, _route(request), counts)
    return response


async def ack(request: web.Request) -> web.Response:
    principal = require(request, "write")
    runtime = keys.get_runtime(request)
    state = _state(runtime)
    seq = path_int(request, "seq", "Bad seq", "the event's journal seq is an integer")
    body = await read_json(request, 8192)
    comment = body.get("comment", "") if isinstance(body, dict) else None
    if not isinstance(comment, str) or len(comment) > 2000:
        raise Problem(400, "Bad comment", 'send {"comment": "..."} (up to 2000 characters)')
    kind = await asyncio.to_thread(runtime.journal.kind_of, seq)
    trend = _trend_index(runtime)
    if kind is None and trend is not None:  # listed from the index: the journal may have
        # deleted it (max_bytes) while the index keeps it for keep_history
        kind = await asyncio.to_thread(trend.event_kind, seq)
    if kind is None:
        raise Problem(404, "No such event", f"no event with seq {seq} in the local journal")
    rows = await asyncio.to_thread(runtime.journal.read_range, seq - 1, seq)
    acked = row_to_record(rows[0]) if rows else {}
    found = acked.get("payload")
    payload: dict[str, Any] = found if isinstance(found, dict) else {}
    if kind != "alert" or payload.get("state") == "cleared":
        what = "a cleared alert" if kind == "alert" else f"a {kind} event"
        raise Problem(
            409, "Not a fired alert", f"event {seq} is {what}: only an alert that fired is acknowledged"
        )
    alert_rank = PRIVACY_RANK[event_privacy(kind, payload, runtime.hub.points)]
    if alert_rank > privacy.limit_for(principal):  # as the UI offers it: to who may read the alert
        raise Problem(
            403, "Private data", f"alert {seq} is {RANK_CLASS[alert_rank]}: above what this account may read"
        )
    # the user's name is personal; the acked event's class when higher (a comment on a health
    # alert may quote it): an acknowledgement launders nothing
    rank = max(PRIVACY_RANK[Privacy.PERSONAL], alert_rank)
    now = time.time()
    stored = await asyncio.to_thread(_stored_ack, state, seq, principal.name, comment, now)
    with state.lock:  # the first acknowledgement stays: a second would erase who, when and why
        added = state.conn.execute(
            "INSERT INTO ui_acks(seq, user, comment, ts, privacy, sealed) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(seq) DO NOTHING",
            (seq, stored[0], stored[1], now, rank, stored[2]),
        ).rowcount
    if not added:
        await _already_acked(request, runtime, principal, seq)
    # the audit log is kept for good and not sealed: who acknowledged what, not the comment
    audit.record(state, principal.name, "alert_ack", str(seq), kind=kind, commented=bool(comment))
    _journal_ack(runtime, seq, kind, acked, payload, principal.name, comment, RANK_CLASS[rank])
    return json_response({"seq": seq, "ack": {"user": principal.name, "comment": comment}})


RANK_CLASS = {rank: cls for cls, rank in PRIVACY_RANK.items()}


async def _already_acked(request: web.Request, runtime: Runtime, principal: Principal, seq: int) -> None:
    """Refuse a second acknowledgement of alert `seq` (409), saying the first as the caller may
    read it (who up to their class, counted as read; else only when), under `ack`."""
    record: dict[str, Any] = {"seq": seq}
    counts: privacy.ReadCounts = Counter()
    acks = await asyncio.to_thread(_acks_for, _state(runtime), [seq])
    _shown_acks(principal, [record], acks, counts)
    first = record["ack"] or {}
    await privacy.audit_reads(runtime, principal, _route(request), counts)
    at = _site_time(runtime, first.get("ts"))
    if "user" in first:
        raise Problem(
            409,
            "Already acknowledged",
            f"alert {seq} was acknowledged by {first['user']} at {at}; the first acknowledgement stays",
            message_key="msg.alert.already_acked",
            args={"user": first["user"], "at": at},
            ack=first,
        )
    raise Problem(
        409,
        "Already acknowledged",
        f"alert {seq} was acknowledged at {at}; the first acknowledgement stays",
        message_key="msg.alert.already_acked_at",
        args={"at": at},
        ack=first,
    )


def _site_time(runtime: Runtime, ts: Any) -> str:
    """Epoch seconds as the site's local time (its timezone's name after it), for a message."""
    if not isinstance(ts, int | float):
        return "?"
    zone = runtime.site.site.timezone
    return f"{datetime.fromtimestamp(ts, ZoneInfo(zone)):%Y-%m-%d %H:%M:%S} ({zone})"


def _journal_ack(
    runtime: Runtime,
    seq: int,
    kind: str,
    acked: dict[str, Any],
    payload: dict[str, Any],
    user: str,
    comment: str,
    cls: Privacy,
) -> None:
    """The acknowledgement as an `alert_ack` event, so it travels upstream and into the KPIs like
    the alert did, of class `cls`: sinks pseudonymise or withhold `user`, and withhold the whole
    acknowledgement of a sensitive alert from a recipient not allowed sensitive data."""
    runtime.hub.publish_event(
        Event(
            "alert_ack",
            runtime.site.site.id,
            Severity.INFO,
            {
                "seq": seq,
                "kind": kind,
                "rule": payload.get("rule", acked.get("source")),
                "severity": acked.get("severity"),
                "user": user,
                "comment": comment,
                "acked_at": runtime.clock(),
                "privacy": str(cls),
            },
            runtime.clock(),
        )
    )


async def yaml_helper(request: web.Request) -> web.Response:
    """{"text": YAML} → {"data"} (with a located error), or {"data"} → {"text"}: the rule editor
    edits YAML and there is no YAML parser in a browser without a build step. The conversion
    runs in `rule_yaml`'s worker process, never on the event loop."""
    require(request, "read")
    worker = request.app[YAML_WORKER_KEY]
    body = await read_json(request, MAX_YAML_BODY)
    if isinstance(body, dict) and isinstance(body.get("text"), str):
        status, out = await worker.run("text", body["text"])
    elif isinstance(body, dict) and "data" in body:
        status, out = await worker.run("data", body["data"])
    else:
        raise Problem(400, "Expected text or data", 'send {"text": "yaml"} or {"data": {...}}')
    # a located YAML error is a problem document too, but stays application/json: the rule
    # editor and the API description have always read its `error` from that
    return web.Response(status=status, body=out, content_type="application/json")


ROUTES = [
    web.get("/api/v1/history", history),
    web.get("/api/v1/devices/{id}/points", device_points),
    web.post("/api/v1/points/{id}/write", write_point),
    web.get("/api/v1/events", events),
    web.get("/api/v1/alerts/active", active_alerts),
    web.post("/api/v1/alerts/{seq}/ack", ack),
    web.post("/api/v1/ui/yaml", yaml_helper),
]


def expire_acks(state: StateDB, source: str) -> Callable[[float, Mapping[int, float | None]], list[Event]]:
    """The journal's expirer of acknowledgements (`Journal.add_expirer`): each goes at the
    retention of its class, counted by one `alert_acks_expired` event."""

    def expire(now: float, retention_s: Mapping[int, float | None]) -> list[Event]:
        gone: dict[str, int] = {}
        for cls in (Privacy.PERSONAL, Privacy.SENSITIVE):
            keep = retention_s.get(PRIVACY_RANK[cls])
            if keep is None:
                continue
            with state.lock:
                n = state.conn.execute(
                    "DELETE FROM ui_acks WHERE privacy = ? AND ts < ?", (PRIVACY_RANK[cls], now - keep)
                ).rowcount
            if n:
                gone[str(cls)] = n
        if not gone:
            return []
        payload = {"count": sum(gone.values()), "by_class": gone}
        return [Event("alert_acks_expired", source, Severity.INFO, payload, now)]

    return expire


def setup(app: web.Application, runtime: Runtime) -> None:
    _state(runtime).migrate("ui", ACK_MIGRATIONS)
    try:
        sealed = seal_clear_acks(_state(runtime))  # the privacy component, which seals, starts first
    except sqlite3.Error as exc:  # a full disk: the gateway runs on, and the next start seals them
        log.warning("alert acknowledgements stored in clear stay so until the next start: %s", exc)
    else:
        if sealed:
            log.info("sealed %d alert acknowledgements stored in clear", sealed)
    runtime.journal.add_expirer(expire_acks(_state(runtime), runtime.site.site.id))
    app[QUERY_SLOTS_KEY] = asyncio.Semaphore(QUERY_SLOTS)
    worker = app[YAML_WORKER_KEY] = YamlWorker()
    app.on_cleanup.append(worker.close)
    app.router.add_routes(ROUTES)
