"""`GET /api/v1/live`: Server-Sent Events of the records the hub journals, as they are journaled.

Each connection subscribes to the hub with a bounded queue; a browser that cannot keep up loses
records rather than growing the gateway's memory, and is told how many (a `dropped` event).
Filters (`device=`, `points=a,b`, `events=0`) keep a device page's stream small.

Reads of personal and sensitive records are audited per connection, not per record: one `read`
entry with the records sent per class when the connection ends (noticed at the next write or
keepalive, or when the gateway stops), and one every AUDIT_EVERY_S while it stays open, so a
stream held open for days, or a gateway that dies, leaves at most that span unrecorded.

A stream outlives the request that opened it, so its credential is asked again every RECHECK_S:
once the token is revoked, the session ended (logout, password change, an admin ending it, the
account disabled or deleted) or the account's role lowered below the class the stream was
opened with, the stream says so in a `closed` event and ends (so does one whose credential cannot
be verified, the state DB failing). The re-check is not the user's activity: a session whose
user does nothing but keep a live page open ends at its idle timeout as any other. A browser's
EventSource then reconnects on its own, and gets a 401, or a stream at its new, lower class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from edge.api import keys, privacy
from edge.api.auth import Principal, authenticate, require
from edge.api.problem import Problem, json_body
from edge.model import QUALITY_NAMES, Reading, Record

if TYPE_CHECKING:
    from edge.runtime import Runtime

log = logging.getLogger(__name__)

QUEUE_BATCHES = 500
KEEPALIVE_S = 15.0
AUDIT_EVERY_S = 300.0
RECHECK_S = 5.0  # how long a revoked or lowered credential may keep an open stream


def record_json(rec: Record) -> dict[str, Any]:
    if type(rec) is Reading:
        return {
            "type": "reading",
            "ts": rec.ts,
            "point": rec.point,
            "value": rec.value,
            "quality": QUALITY_NAMES[rec.quality & 3],
        }
    return {
        "type": "event",
        "ts": rec.ts,
        "kind": rec.kind,  # type: ignore[union-attr]
        "source": rec.source,  # type: ignore[union-attr]
        "severity": str(rec.severity),  # type: ignore[union-attr]
        "payload": rec.payload,  # type: ignore[union-attr]
    }


class Subscription:
    """One connection's share of the hub: the records its filters want, in a bounded queue; a
    batch that does not fit is counted in `dropped`, not queued."""

    def __init__(self, device: str | None, points: set[str], with_events: bool) -> None:
        self.device = device
        self.points = points
        self.with_events = with_events
        self.prefix = device + "." if device else None
        self.queue: asyncio.Queue[list[Record]] = asyncio.Queue(maxsize=QUEUE_BATCHES)
        self.dropped = 0

    def wanted(self, rec: Record) -> bool:
        if type(rec) is Reading:
            if self.points:
                return rec.point in self.points
            return self.prefix is None or rec.point.startswith(self.prefix)
        return self.with_events and (self.device is None or rec.source == self.device)  # type: ignore[union-attr]

    def on_batch(self, batch: list[Record]) -> None:
        mine = [r for r in batch if self.wanted(r)]
        if not mine:
            return
        try:
            self.queue.put_nowait(mine)
        except asyncio.QueueFull:
            self.dropped += len(mine)


async def audit_span(
    runtime: Runtime, principal: Any, target: str, counts: privacy.ReadCounts, since: float, *, last: bool
) -> float:
    """One audit entry for what a live stream sent since `since` (monotonic); empties `counts`
    and returns the time the next span starts."""
    now = time.monotonic()
    await privacy.audit_reads(
        runtime, principal, target, counts, span_s=round(now - since, 1), connection_end=last
    )
    counts.clear()
    return now


def current_principal(request: web.Request) -> Principal | None:
    """The caller as the request's credential says now, found as the auth middleware finds it
    (`authenticate`), but as a look, not a use: the stream's re-check does not keep its session
    from ending at its idle timeout. None when it no longer authenticates."""
    try:
        return authenticate(request, touch=False)
    except Problem:  # a bearer token unknown or revoked
        return None


def ended_by(opened: Principal, now: Principal | None) -> str | None:
    """Why a stream opened by `opened` must end, its credential now being `now`: `revoked` when
    the credential no longer authenticates or no longer reads, `demoted` when it may see less
    than the class the stream serves; None while it may go on."""
    if now is None or now.kind != opened.kind or now.name != opened.name or "read" not in now.scopes:
        return "revoked"
    if privacy.limit_for(now) < privacy.limit_for(opened):
        return "demoted"
    return None


async def live(request: web.Request) -> web.StreamResponse:
    principal = require(request, "read")
    runtime = keys.get_runtime(request)
    sub = Subscription(
        request.query.get("device"),
        {p for p in request.query.get("points", "").split(",") if p},
        request.query.get("events", "1") not in ("0", "false"),
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    unsubscribe = runtime.hub.subscribe(sub.on_batch)
    stopping = asyncio.ensure_future(runtime.stopping.wait())
    reported_drops = 0
    counts: privacy.ReadCounts = Counter()
    target = privacy.route_of(request.method, request.path)
    opened = audited = checked = written = time.monotonic()

    try:
        await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
        while not runtime.stopping.is_set():
            getter = asyncio.ensure_future(sub.queue.get())
            wait = min(checked + RECHECK_S, written + KEEPALIVE_S) - time.monotonic()
            done, _ = await asyncio.wait(
                {getter, stopping}, timeout=max(0.0, wait), return_when="FIRST_COMPLETED"
            )
            if getter not in done:
                getter.cancel()
            if stopping in done:
                break
            if time.monotonic() - checked >= RECHECK_S:  # before anything more is sent
                try:
                    reason = ended_by(principal, await asyncio.to_thread(current_principal, request))
                except Exception as exc:  # the state DB failing: a credential not verified serves nothing
                    log.warning("live stream of %s: credential not verified: %s", principal.name, exc)
                    reason = "unverified"
                if reason is not None:
                    msg = orjson.dumps({"reason": reason, "ts": time.time()})
                    await response.write(b"event: closed\ndata: " + msg + b"\n\n")
                    break
                checked = time.monotonic()
            if getter not in done:
                if time.monotonic() - written >= KEEPALIVE_S:
                    await response.write(b": keepalive\n\n")
                    written = time.monotonic()
                if counts and time.monotonic() - audited >= AUDIT_EVERY_S:
                    audited = await audit_span(runtime, principal, target, counts, audited, last=False)
                continue
            batch = getter.result()
            records = privacy.minimise(runtime, principal, [record_json(r) for r in batch], counts)
            if sub.device is not None:  # its events chosen by source: not by a hidden one
                records = privacy.redacted_match(records, "source")
                if not records:
                    continue
            payload = json_body(records, str_keys=True)
            await response.write(b"event: records\ndata: " + payload + b"\n\n")
            written = time.monotonic()
            if counts and time.monotonic() - audited >= AUDIT_EVERY_S:
                audited = await audit_span(runtime, principal, target, counts, audited, last=False)
            if sub.dropped != reported_drops:
                reported_drops = sub.dropped
                msg = orjson.dumps({"dropped": sub.dropped, "ts": time.time()})
                await response.write(b"event: dropped\ndata: " + msg + b"\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
        stopping.cancel()
        if counts:  # what was sent since the last entry: the connection's summary
            try:
                await audit_span(runtime, principal, target, counts, audited, last=True)
            except Exception:  # the gateway's state DB may already be closing
                log.warning(
                    "could not audit the reads of a live stream open %.0f s", time.monotonic() - opened
                )
        with contextlib.suppress(Exception):
            await response.write_eof()
    return response


def setup(app: web.Application, runtime: Runtime) -> None:
    app.router.add_get("/api/v1/live", live)
