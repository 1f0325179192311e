"""The pull API for central platforms: the stream from a consumer's cursor, acks, point metadata,
latest values, and the OpenAPI document.

A consumer only reads its own stream: the consumer id comes from its credential (a site-file
consumer token, or an API token with scope `pull` and a consumer id), never from the request.
Records above the consumer's privacy class (default `personal`) are withheld; `next` still moves
past them, so the consumer's cursor passes them too. What a consumer receives is shaped for it
(`RecordShaper`): identifying event fields and personal string points as its own pseudonyms, or
withheld when it has no `pseudonymise:` key (an API-token consumer not in the site file has none).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from edge.api import keys, openapi, privacy
from edge.api.auth import Principal, require
from edge.api.params import MAX_SEQ, float_param, int_param
from edge.api.problem import Problem, json_response, read_json
from edge.model import QUALITY_NAMES, Privacy
from edge.privacy.pseudonym import Pseudonymiser, RecordShaper
from edge.store.journal import row_to_record
from edge.store.reader import JournalReader, Row
from edge.store.records import PRIVACY_RANK, IncludeConfig, RecordFilter
from edge.store.rows import CLOCK_FLAG

if TYPE_CHECKING:
    from edge.runtime import Runtime

MAX_LIMIT = 10_000
# Stream pages built at once: each filters, shapes and encodes up to MAX_LIMIT rows (about 5 ms of
# CPU per 10,000) in a thread, as the UI's history queries do (edge.web.ui_api QUERY_SLOTS), so a
# consumer paging fast takes no event-loop time from ingest and at most two threads of the default
# executor the rest of the runtime shares; further requests wait their turn.
PAGE_SLOTS = 2
PULL_KEY: web.AppKey[PullService] = web.AppKey("sync.pull", object)  # type: ignore[arg-type]
MAX_WAIT = 60.0


class PullService:
    """State shared by the pull handlers of one app: a read connection, filters, the ack lock."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._reader: JournalReader | None = None
        self._filters: dict[str, RecordFilter] = {}
        # keys are read once, at start: a consumer whose key file is missing stops the start
        self._shapers: dict[str, RecordShaper] = {
            c.id: self._shaper(Pseudonymiser(c.pseudonymise, f"consumer {c.id} pseudonymise"))
            for c in runtime.site.consumers
            if c.pseudonymise is not None
        }
        self.ack_lock = asyncio.Lock()
        self.page_slots = asyncio.Semaphore(PAGE_SLOTS)
        self.served_rows = 0
        self.waiting = 0  # long polls waiting right now

    @property
    def reader(self) -> JournalReader:
        if self._reader is None:
            self._reader = JournalReader(self.runtime.journal.path)
        return self._reader

    def max_privacy(self, consumer: str) -> Privacy:
        for c in self.runtime.site.consumers:
            if c.id == consumer:
                return Privacy(getattr(c, "max_privacy", Privacy.PERSONAL))
        return Privacy.PERSONAL

    def filter_for(self, consumer: str) -> RecordFilter:
        f = self._filters.get(consumer)
        if f is None:
            f = RecordFilter(
                IncludeConfig(),
                self.max_privacy(consumer),
                lambda: self.runtime.hub.points,
                lambda: self.runtime.hub.points_version,
            )
            self._filters[consumer] = f
        return f

    def _shaper(self, pseudonymiser: Pseudonymiser | None) -> RecordShaper:
        return RecordShaper(
            pseudonymiser, lambda: self.runtime.hub.points, lambda: self.runtime.hub.points_version
        )

    def shaper_for(self, consumer: str) -> RecordShaper:
        """The consumer's pseudonyms; without a key of its own, identifying fields are withheld."""
        shaper = self._shapers.get(consumer)
        if shaper is None:
            shaper = self._shapers[consumer] = self._shaper(None)
        return shaper

    def page(self, consumer: str, after: int, limit: int) -> tuple[bytes, int, privacy.ReadCounts]:
        """The stream page after `after` as JSON, how many records it holds and how many of them
        per class above public (for the audit of reads). Blocking: the read, the privacy filter
        and the encoding all run in the calling (worker) thread."""
        rows = self.reader.read_rows(after, limit)
        kept = self.shaper_for(consumer).apply(self.filter_for(consumer).apply(rows))
        nxt = rows[-1][0] if rows else after
        more = nxt < self.runtime.journal.committed_seq
        items = records_of(kept)
        page = {"items": items, "next": nxt, "more": more}
        # json_body's OPT_NON_STR_KEYS nearly doubles the encoding time of 10,000 records, and
        # these keys are all strings (payloads are parsed from JSON text): the same bytes, sooner
        return orjson.dumps(page, default=str), len(kept), self.read_counts(kept, items)

    def read_counts(self, rows: list[Row], items: list[dict[str, Any]]) -> privacy.ReadCounts:
        """`privacy.count_records(items)`, by point for a page of readings only: one class
        look-up per point instead of one per record (a page holds few points many times)."""
        if list(map(_KIND, rows)).count(None) != len(rows):
            return privacy.count_records(self.runtime, items)
        counts: privacy.ReadCounts = Counter()
        points = self.runtime.hub.points
        for point, n in Counter(map(_POINT, rows)).items():
            info = points.get(point)
            privacy.count_read(counts, PRIVACY_RANK[info.privacy] if info is not None else 0, n)
        return counts

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


_KIND = itemgetter(5)
_POINT = itemgetter(2)


def records_of(rows: list[Row]) -> list[dict[str, Any]]:
    """`row_to_record` of each row, with the plain reading built inline (most of a page): its
    quality column holds the quality alone, or with the clock flag when it was journaled while the
    clock was untrusted. A call per record was a fifth of a page's CPU."""
    names = QUALITY_NAMES
    flagged = CLOCK_FLAG
    return [
        {"seq": r[0], "ts": r[1], "type": "reading", "point": r[2], "value": r[3], "quality": names[r[4]]}
        if r[5] is None and r[4] < 3
        else {
            "seq": r[0],
            "ts": r[1],
            "type": "reading",
            "point": r[2],
            "value": r[3],
            "quality": names[r[4] - flagged],
            "clock_untrusted": True,
        }
        if r[5] is None and flagged <= r[4] < flagged + 3
        else row_to_record(r)
        for r in rows
    ]


def consumer_of(principal: Principal) -> str:
    if not principal.consumer:
        raise Problem(403, "Forbidden", "this credential has the pull scope but names no consumer")
    return principal.consumer


async def _close_reader(app: web.Application) -> None:
    app[PULL_KEY].close()


async def stream(request: web.Request) -> web.Response:
    principal = require(request, "pull")
    cid = consumer_of(principal)
    svc = request.app[PULL_KEY]
    journal = svc.runtime.journal
    after = int_param(request, "after", None, 0, MAX_SEQ)
    limit = int_param(request, "limit", 1000, 1, MAX_LIMIT)
    wait = float_param(request, "wait", 0.0, 0.0, MAX_WAIT)
    assert limit is not None
    cursor = journal.get_cursor(cid)
    if cursor is None:  # an API-token consumer not declared in the site file
        cursor = await journal.register_cursor(cid, "consumer")
    if after is None:
        after = cursor
    if wait > 0 and journal.committed_seq <= after:
        svc.waiting += 1
        try:
            await journal.wait_committed(after, wait)
        finally:
            svc.waiting -= 1
    svc.filter_for(cid).refresh()  # the point classes as the loop sees them now
    svc.shaper_for(cid).personal_points()
    async with svc.page_slots:
        body, served, counts = await asyncio.to_thread(svc.page, cid, after, limit)
    svc.served_rows += served
    await privacy.audit_reads(svc.runtime, principal, privacy.route_of(request.method, request.path), counts)
    return web.Response(body=body, content_type="application/json")


async def ack(request: web.Request) -> web.Response:
    principal = require(request, "pull")
    cid = request.match_info["id"]
    if consumer_of(principal) != cid:
        raise Problem(
            403, "Forbidden", f"this credential belongs to consumer {principal.consumer!r}, not {cid!r}"
        )
    svc = request.app[PULL_KEY]
    journal = svc.runtime.journal
    body = await read_json(request, max_bytes=4096)
    seq = body.get("seq") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"seq"} or type(seq) is not int or seq < 0:
        raise Problem(
            400, "Invalid acknowledgement", 'expected a JSON object {"seq": N} with an integer N >= 0'
        )
    async with svc.ack_lock:
        committed = journal.committed_seq
        if seq > committed:
            raise Problem(
                400,
                "Ack past the end",
                f"seq {seq} was never committed; the last committed seq is {committed}",
            )
        stored = journal.get_cursor(cid)  # one query on the loop: None when never acked
        current = stored or 0
        if seq < current:
            raise Problem(
                409,
                "Ack moves backwards",
                f"consumer {cid} already acknowledged {current}; acks only move forward",
                cursor=current,
            )
        if seq > current or stored is None:
            await journal.set_cursor(cid, seq, kind="consumer")
    return json_response({"consumer": cid, "cursor": seq, "committed": journal.committed_seq})


async def points(request: web.Request) -> web.Response:
    require(request, "pull", "read")
    out = [
        {
            "id": p.id,
            "device": p.device,
            "name": p.name,
            "type": str(p.type),
            "unit": p.unit,
            "writable": p.writable,
            "privacy": str(p.privacy),
            "description": p.description,
            "precision": p.precision,
        }
        for p in sorted(keys.get_runtime(request).hub.points.values(), key=lambda p: p.id)
    ]
    return json_response({"points": out})


async def latest(request: web.Request) -> web.Response:
    principal = require(request, "pull", "read")
    svc = request.app[PULL_KEY]
    runtime = svc.runtime
    device = request.query.get("device")
    shaper: RecordShaper | None = None
    if "read" in principal.scopes:  # a local user or token: the class of its role
        limit_rank = privacy.limit_for(principal)
    else:  # a consumer sees only what its class allows, personal strings as its pseudonyms
        cid = consumer_of(principal)
        limit_rank = PRIVACY_RANK[svc.max_privacy(cid)]
        shaper = svc.shaper_for(cid)
    out: list[dict[str, Any]] = []
    counts: privacy.ReadCounts = Counter()
    for pid, r in sorted(runtime.hub.latest.items()):
        if device and not pid.startswith(device + "."):
            continue
        info = runtime.hub.points.get(pid)
        if info is not None and PRIVACY_RANK[info.privacy] > limit_rank:
            continue
        value = shaper.value(pid, r.value) if shaper is not None else r.value
        if info is not None:
            privacy.count_read(counts, PRIVACY_RANK[info.privacy])
        out.append({"point": pid, "ts": r.ts, "value": value, "quality": ("good", "bad", "stale")[r.quality]})
    await privacy.audit_reads(runtime, principal, privacy.route_of(request.method, request.path), counts)
    return json_response({"latest": out})


async def openapi_doc(request: web.Request) -> web.Response:
    require(request)  # any credential: every API but /healthz needs one
    return json_response(openapi.document())


ROUTES = [
    web.get("/api/v1/stream", stream),
    web.post("/api/v1/consumers/{id}/ack", ack),
    web.get("/api/v1/points", points),
    web.get("/api/v1/latest", latest),
    web.get("/api/v1/openapi.json", openapi_doc),
]


def setup(app: web.Application, runtime: Runtime) -> None:
    app[PULL_KEY] = PullService(runtime)
    app.on_cleanup.append(_close_reader)
    app.router.add_routes(ROUTES)
