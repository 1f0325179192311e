"""`GET /api/v1/live`: Server-Sent Events of the records the hub journals, as they are journaled.

Each connection subscribes to the hub with a bounded queue; a browser that cannot keep up loses
records rather than growing the gateway's memory, and is told how many (a `dropped` event).
Filters (`device=`, `points=a,b`, `events=0`) keep a device page's stream small.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from edge.api import privacy
from edge.api.auth import require
from edge.model import QUALITY_NAMES, Reading, Record

if TYPE_CHECKING:
    from edge.runtime import Runtime

QUEUE_BATCHES = 500
KEEPALIVE_S = 15.0


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


def setup(app: web.Application, runtime: Runtime) -> None:
    async def live(request: web.Request) -> web.StreamResponse:
        principal = require(request, "read")
        device = request.query.get("device")
        points = {p for p in request.query.get("points", "").split(",") if p}
        with_events = request.query.get("events", "1") not in ("0", "false")
        prefix = device + "." if device else None

        def wanted(rec: Record) -> bool:
            if type(rec) is Reading:
                if points:
                    return rec.point in points
                return prefix is None or rec.point.startswith(prefix)
            return with_events and (device is None or rec.source == device)  # type: ignore[union-attr]

        queue: asyncio.Queue[list[Record]] = asyncio.Queue(maxsize=QUEUE_BATCHES)
        dropped = 0

        def on_batch(batch: list[Record]) -> None:
            nonlocal dropped
            mine = [r for r in batch if wanted(r)]
            if not mine:
                return
            try:
                queue.put_nowait(mine)
            except asyncio.QueueFull:
                dropped += len(mine)

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        unsubscribe = runtime.hub.subscribe(on_batch)
        stopping = asyncio.ensure_future(runtime.stopping.wait())
        reported_drops = 0
        try:
            await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
            while not runtime.stopping.is_set():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, stopping}, timeout=KEEPALIVE_S, return_when="FIRST_COMPLETED"
                )
                if getter not in done:
                    getter.cancel()
                    if stopping in done:
                        break
                    await response.write(b": keepalive\n\n")
                    continue
                batch = getter.result()
                records = privacy.minimise(runtime, principal, [record_json(r) for r in batch])
                payload = orjson.dumps(records, default=str)
                await response.write(b"event: records\ndata: " + payload + b"\n\n")
                if dropped != reported_drops:
                    reported_drops = dropped
                    msg = orjson.dumps({"dropped": dropped, "ts": time.time()})
                    await response.write(b"event: dropped\ndata: " + msg + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            unsubscribe()
            stopping.cancel()
            with contextlib.suppress(Exception):
                await response.write_eof()
        return response

    app.router.add_get("/api/v1/live", live)
