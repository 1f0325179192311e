"""The pull API for central platforms: the stream from a consumer's cursor, acks, point metadata,
latest values, and the OpenAPI document.

A consumer only reads its own stream: the consumer id comes from its credential (a site-file
consumer token, or an API token with scope `pull` and a consumer id), never from the request.
Records above the consumer's privacy class (default `personal`) are withheld; `next` still moves
past them, so the consumer's cursor passes them too. What a consumer receives is shaped for it
(`RecordShaper`): identifying event fields and personal string points as its own pseudonyms, or
withheld when it has no `pseudonymise:` key (an API-token consumer not in the site file has none).

While a consumer stores a page, its next one is read ahead (`PullService.read_ahead`) and served
only if it is still exactly what a read at the time of the request gives (`PullService.prepared`).
A page of plain readings with no point the consumer could be denied (most pages) is read by column
(`JournalReader.read_plain`) and encoded from the columns (`plain_body`), into the same bytes; a
page with a few other rows (events, flagged or sealed values, readings of a point the consumer could
be denied) is read mixed: those rows row by row, filtered, shaped and counted, put in their places
among the plain ones (`mixed_items`); any other page is read row by row.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import Counter
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from aiohttp import web

from edge.api import keys, openapi, privacy, tokens
from edge.api.auth import Principal, require
from edge.api.params import MAX_SEQ, bool_param, float_param, int_param
from edge.api.problem import Problem, json_response, read_json
from edge.gcpause import gc_paused
from edge.model import QUALITY_NAMES, Privacy
from edge.privacy.pseudonym import Pseudonymiser, RecordShaper
from edge.store.journal import row_to_record
from edge.store.reader import JournalReader, PlainRows, Row, StreamRows
from edge.store.records import PRIVACY_RANK, IncludeConfig, RecordFilter
from edge.store.rows import CLOCK_FLAG

if TYPE_CHECKING:
    from edge.runtime import Runtime

MAX_LIMIT = 10_000
# Stream pages built at once: each filters, shapes and encodes up to MAX_LIMIT rows (about 10 ms
# of CPU per 10,000) in a thread, as the UI's history queries do (edge.web.ui_api QUERY_SLOTS), so a
# consumer paging fast takes no event-loop time from ingest and at most two threads of the default
# executor the rest of the runtime shares; further requests wait their turn.
PAGE_SLOTS = 2
PULL_KEY: web.AppKey[PullService] = web.AppKey("sync.pull", object)  # type: ignore[arg-type]
MAX_WAIT = 60.0
# A page read ahead and not asked for is dropped after this: its memory (up to a page, ~1 MB at
# MAX_LIMIT) is held for a consumer that stores its page and comes back, not for one that left.
READ_AHEAD_TTL = 30.0
log = logging.getLogger("edge.api.pull")


class Page(NamedTuple):
    """A stream page as served, and what says whether it still is (read ahead, served later)."""

    body: bytes
    served: int  # records in it
    counts: privacy.ReadCounts  # ...per class above public, for the audit of reads
    after: int
    limit: int
    rows: int  # rows read (records withheld for privacy included)
    next: int
    more: bool
    committed: int  # the journal's committed seq before it was read
    view: tuple[int, int, int]  # PullService.view when it was built
    # its rows that held a sealed value, as stored and as they opened (not the page's rows: a
    # page held for a consumer keeps its body, not a second copy of what it encodes)
    sealed: list[Row]
    opened: list[Row]


class ReadAhead(NamedTuple):
    after: int
    limit: int
    task: asyncio.Task[Page | None]
    expiry: asyncio.TimerHandle


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
        self._ahead: dict[str, ReadAhead] = {}  # consumer -> its next page, being built or built
        self._tasks: set[asyncio.Task[Page | None]] = set()
        self._closing = False
        self.read_ahead_served = 0  # pages served from a read-ahead
        self.read_ahead_missed = 0  # read ahead, then another page asked for (or none in time)
        self.read_ahead_stale = 0  # read ahead, asked for, but read again: something changed
        #: a consumer's pages read row by row from now on without trying the column read first
        self._row_reads: dict[str, int] = {}
        self.row_reads_after_miss = ROW_READS_AFTER_MISS
        #: a page's rows that are not plain readings read row by row among the others read by
        #: column, at most (a share of the page's limit; 0: such a page is read row by row)
        self.mixed_share = MIXED_SHARE
        self.mixed_pages = 0  # pages served as a mixed read

    @property
    def reader(self) -> JournalReader:
        if self._reader is None:
            self._reader = JournalReader(self.runtime.journal.path)
        return self._reader

    def max_privacy(self, consumer: str) -> Privacy:
        """The consumer's class from its `consumers:` entry; one the site file does not declare
        (a token alone names it, perhaps misspelt) gets public records only until an entry does."""
        for c in self.runtime.site.consumers:
            if c.id == consumer:
                return Privacy(getattr(c, "max_privacy", Privacy.PERSONAL))
        return Privacy(tokens.UNDECLARED_CLASS)

    def cursor_owner(self, consumer: str) -> str | None:
        """What other than a pull consumer a cursor named `consumer` belongs to ("the upstream
        sink 'X'", "the kpi cursor"), None when it is a consumer's or nobody's yet. Sinks are
        judged by the site file, so a sink not started yet (or disabled) keeps its id too."""
        return self.runtime.site.cursor_owner(consumer, self.runtime.journal.cursors())

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

    def view(self) -> tuple[int, int, int]:
        """What the privacy filters and shapers decide by (`RecordFilter.refresh`): a page built
        under one view is built again under another."""
        points = self.runtime.hub.points
        return id(points), len(points), self.runtime.hub.points_version

    def page(self, consumer: str, after: int, limit: int) -> Page:
        """The stream page after `after`, encoded, with what the audit of reads and a later
        check of its freshness need. Blocking: the read, the privacy filter and the encoding all
        run in the calling (worker) thread."""
        # a page is 10,000 row tuples and as many dicts: the cyclic GC ran ~30 young collections
        # over them per page, none of which could find a cycle (~8 % of a page's CPU)
        with gc_paused():
            return self._page(consumer, after, limit)

    def _page(self, consumer: str, after: int, limit: int) -> Page:
        view = self.view()
        # before the read: a record committed from now on makes a short page held stale, even
        # one the read already saw (committed_seq moves after the commit)
        before = self.runtime.journal.committed_seq
        shaper = self.shaper_for(consumer)
        private = shaper.personal_points()  # every point the filter could withhold is among them
        # public plain readings (most pages), read by column: nothing to withhold, shape or count;
        # a few other rows among them (a stream with events) are read, filtered, shaped and
        # counted row by row, up to `mixed_share` of the page
        plain = None
        skip = self._row_reads.get(consumer, 0)
        if skip:
            self._row_reads[consumer] = skip - 1
        else:
            plain = self.reader.read_plain(after, limit, private, int(limit * self.mixed_share))
            if plain is None:  # many rows not plain (events...): likely in the next pages too
                self._row_reads[consumer] = self.row_reads_after_miss
        if plain is not None:
            n = len(plain.seqs)
            nxt = plain.seqs[-1] if n else after
            more = nxt < self.runtime.journal.committed_seq
            if plain.others is not None:
                return self._mixed(
                    consumer,
                    plain,
                    private,
                    Page(b"", n, Counter(), after, limit, n, nxt, more, before, view, [], []),
                )
            body = plain_body(plain, nxt, more)
            return Page(body, n, Counter(), after, limit, n, nxt, more, before, view, [], [])
        read = self.reader.read_stream(after, limit)
        rows = read.rows
        nxt = rows[-1][0] if rows else after
        more = nxt < self.runtime.journal.committed_seq
        kept, items, counts = self._served(consumer, read, private)
        body = _encode_page(items, nxt, more)
        return Page(
            body,
            len(kept),
            counts,
            after,
            limit,
            len(rows),
            nxt,
            more,
            before,
            view,
            read.stored,
            read.opened,
        )

    def _mixed(self, consumer: str, plain: PlainRows, private: frozenset[str], page: Page) -> Page:
        """`page` (its range, `next`, `more`, ...) with the body and counts of a mixed read: the
        rows that are not plain readings filtered, shaped and counted as the row read does, and
        put in their places among the plain ones."""
        assert plain.others is not None
        read = plain.others
        kept, items, counts = self._served(consumer, read, private)
        self.mixed_pages += 1
        body = _encode_page(mixed_items(plain, kept, items), page.next, page.more)
        served = page.rows - len(read.rows) + len(kept)
        return page._replace(body=body, served=served, counts=counts, sealed=read.stored, opened=read.opened)

    def _served(
        self, consumer: str, read: StreamRows, private: frozenset[str]
    ) -> tuple[list[Row], list[dict[str, Any]], privacy.ReadCounts]:
        """(rows served, their records, the audit's counts) of rows read row by row, for the whole
        page or for a mixed page's other rows: filtered and shaped for the consumer when an event
        or a point it could be denied may be among them, else served as they are."""
        rows = read.rows
        if read.events or private:
            kept = self.shaper_for(consumer).apply(self.filter_for(consumer).apply(rows))
            items = records_of(kept)
            return kept, items, self.read_counts(kept, items, private)
        # public readings alone, some flagged or sealed, or with gaps between their seqs
        return rows, records_of(rows), Counter()

    def read_counts(
        self, rows: list[Row], items: list[dict[str, Any]], private: frozenset[str] | None = None
    ) -> privacy.ReadCounts:
        """`privacy.count_records(items)`, by point for a page of readings only: one class
        look-up per point instead of one per record (a page holds few points many times), none
        when no point of the page is among the `private` ones (of a class above public)."""
        if list(map(_KIND, rows)).count(None) != len(rows):
            return privacy.count_records(self.runtime, items)
        counts: privacy.ReadCounts = Counter()
        if private is not None and private.isdisjoint(map(_POINT, rows)):
            return counts
        points = self.runtime.hub.points
        for point, n in Counter(map(_POINT, rows)).items():
            info = points.get(point)
            privacy.count_read(counts, PRIVACY_RANK[info.privacy] if info is not None else 0, n)
        return counts

    # ------------------------------------------------------------ read-ahead
    async def prepared(self, consumer: str, after: int, limit: int) -> Page | None:
        """The page read ahead for `consumer` when it is exactly this one and still what a read
        now gives; None otherwise (it is dropped either way: one guess per page served)."""
        ahead = self._ahead.pop(consumer, None)
        if ahead is None:
            return None
        ahead.expiry.cancel()
        if (ahead.after, ahead.limit) != (after, limit):
            self.read_ahead_missed += 1
            return None
        # shielded: a request that goes away must not cancel a build whose thread runs on
        page = await asyncio.shield(ahead.task)
        if page is None or not self._unchanged(page) or not await asyncio.to_thread(self._still_read, page):
            self.read_ahead_stale += 1
            return None
        self.read_ahead_served += 1
        return page

    def _unchanged(self, page: Page) -> bool:
        """Nothing the event loop knows of changed what the page holds: the points' classes, and
        the records after it (a full page with more behind it reads the same whatever was
        committed since; a shorter one, or the last, only when nothing was)."""
        if page.view != self.view():
            return False
        full = page.rows == page.limit and page.more
        return full or page.committed == self.runtime.journal.committed_seq

    def _still_read(self, page: Page) -> bool:
        """The journal still holds every row the page read, and its sealed values open as they
        did (a subject forgotten since opens as erased). Blocking: one count over the page's
        range, and the page's sealed rows opened again."""
        if page.rows and self.reader.count_range(page.after, page.next) != page.rows:
            return False
        return not page.sealed or self.reader.reopen(page.sealed) == page.opened

    def read_ahead(self, consumer: str, after: int, limit: int) -> None:
        """Build `consumer`'s next page in a worker thread while it stores this one, when a page
        slot is free: a consumer catching up asks for it next. One per consumer, dropped when
        the next request asks for another page or after READ_AHEAD_TTL."""
        if self.page_slots.locked() or self._closing:
            return
        old = self._ahead.pop(consumer, None)
        if old is not None:
            old.expiry.cancel()
        task = asyncio.create_task(self._build_ahead(consumer, after, limit))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        loop = asyncio.get_running_loop()
        ahead = ReadAhead(after, limit, task, loop.call_later(READ_AHEAD_TTL, self._expire, consumer))
        self._ahead[consumer] = ahead

    async def _build_ahead(self, consumer: str, after: int, limit: int) -> Page | None:
        try:
            async with self.page_slots:
                return await asyncio.to_thread(self.page, consumer, after, limit)
        except Exception as exc:  # the request that asks for it reads afresh, and fails if it must
            log.debug("pull: the page after %d for %s was not read ahead: %s", after, consumer, exc)
            return None

    def ahead(self, consumer: str) -> asyncio.Task[Page | None] | None:
        """The build of the page held read ahead for `consumer`, if one is."""
        ahead = self._ahead.get(consumer)
        return ahead.task if ahead is not None else None

    def _expire(self, consumer: str) -> None:
        if self._ahead.pop(consumer, None) is not None:
            self.read_ahead_missed += 1

    async def stop(self) -> None:
        """Drop what was read ahead and wait for the builds under way (they use the reader)."""
        self._closing = True
        for ahead in self._ahead.values():
            ahead.expiry.cancel()
        self._ahead.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


_KIND = itemgetter(5)
_POINT = itemgetter(2)
_QUALITY = itemgetter(4)
STREAM_READING = 6  # the length of a reading's row from `JournalReader.read_stream`


def records_of(rows: list[Row]) -> list[dict[str, Any]]:
    """`row_to_record` of each row (a `Row`, or a reading as `JournalReader.read_stream` gives
    it), with the plain reading built inline (most of a page): its quality column holds the
    quality alone, or with the clock flag when it was journaled while the clock was untrusted. A
    call per record was a fifth of a page's CPU."""
    names = QUALITY_NAMES
    if rows and len(rows[0]) == STREAM_READING and list(map(_KIND, rows)).count(None) == len(rows):
        if max(map(_QUALITY, rows)) < 3:  # plain readings alone (checked in C): unpacked, not indexed
            return [
                {"seq": s, "ts": ts, "type": "reading", "point": p, "value": v, "quality": names[q]}
                for s, ts, p, v, q, _ in rows
            ]
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
        else row_to_record(r if len(r) > STREAM_READING else (*r, None, None))
        for r in rows
    ]


#: a page with up to this share of its limit in rows that are not plain readings (events, flagged or
#: sealed values, readings of a point the consumer could be denied) is read mixed: those rows row
#: by row, the rest by column. A 10,000-row page of a stream with 1 % or 10 % events takes about 0.6
#: of the row read's time, with a third about 0.75, with half about 0.85; with events alone the same
MIXED_SHARE = 0.4
#: pages of a consumer read row by row after one the column read could not serve (more than
#: MIXED_SHARE of its rows are not plain): its check costs about 2 ms of a 10,000-row page before
#: the row read; a stream that turns plainer is read by column again after
ROW_READS_AFTER_MISS = 16

_QUALITY_DIGITS = {str(q): name for q, name in enumerate(QUALITY_NAMES)}


def plain_body(page: PlainRows, nxt: int, more: bool) -> bytes:
    """The stream page of `page`'s plain readings, encoded: the bytes `records_of` and the
    page's encoding give for the same rows."""
    return _encode_page(_plain_items(page), nxt, more)


def _plain_items(page: PlainRows) -> list[dict[str, Any]]:
    seqs, points, values = page.seqs, page.points, page.values
    if page.quality is None:  # all good: the common page
        return [
            {"seq": s, "ts": ts, "type": "reading", "point": p, "value": v, "quality": "good"}
            for s, p, (ts, v) in zip(seqs, points, values, strict=True)
        ]
    names = map(_QUALITY_DIGITS.__getitem__, page.quality)
    return [
        {"seq": s, "ts": ts, "type": "reading", "point": p, "value": v, "quality": q}
        for s, p, (ts, v), q in zip(seqs, points, values, names, strict=True)
    ]


def mixed_items(page: PlainRows, kept: list[Row], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of a mixed page: its plain readings' from the columns, and in place of each
    of its other rows the record the row read made of it (`items`, of the `kept` rows), or none
    where it was withheld."""
    assert page.others is not None
    out = _plain_items(page)
    seqs = page.seqs
    made = {row[0]: item for row, item in zip(kept, items, strict=True)}
    head = seqs[0] if seqs else 0
    contiguous = isinstance(seqs, range)
    for row in reversed(page.others.rows):
        seq = row[0]
        i = seq - head if contiguous else bisect_left(seqs, seq)
        item = made.get(seq)
        if item is None:
            del out[i]
        else:
            out[i] = item
    return out


def _encode_page(items: list[dict[str, Any]], nxt: int, more: bool) -> bytes:
    # json_body's OPT_NON_STR_KEYS nearly doubles the encoding time of 10,000 records, and
    # these keys are all strings (payloads are parsed from JSON text): the same bytes, sooner
    return orjson.dumps({"items": items, "next": nxt, "more": more}, default=str)


def consumer_of(principal: Principal, svc: PullService) -> str:
    """The consumer id the credential names, when its cursor is a consumer's: an id that names an
    upstream sink (or another component's cursor, as the KPI fold's `kpi`) would read and move
    that one's cursor, so a sink would skip what the consumer acknowledged."""
    if not principal.consumer:
        raise Problem(403, "Forbidden", "this credential has the pull scope but names no consumer")
    cid = principal.consumer
    owner = svc.cursor_owner(cid)
    if owner is not None:
        raise Problem(
            409,
            "Consumer id taken",
            f"consumer id {cid!r} names {owner}, whose cursor is not a pull consumer's; create a pull "
            "token with another consumer id (edge tokens create NAME --scope pull --consumer ID) "
            "and revoke this one",
            consumer=cid,
        )
    return cid


async def _close_reader(app: web.Application) -> None:
    await app[PULL_KEY].stop()


async def stream(request: web.Request) -> web.Response:
    principal = require(request, "pull")
    svc = request.app[PULL_KEY]
    cid = consumer_of(principal, svc)
    journal = svc.runtime.journal
    after = int_param(request, "after", None, 0, MAX_SEQ)
    limit = int_param(request, "limit", 1000, 1, MAX_LIMIT)
    wait = float_param(request, "wait", 0.0, 0.0, MAX_WAIT)
    acked = bool_param(request, "ack")
    assert limit is not None
    check: asyncio.Task[Page | None] | None = None
    if acked:
        # stored up to `after`: acknowledged as POST .../ack would, before the next page is read, so
        # a consumer catching up makes one round trip a page instead of two
        if after is None:
            raise Problem(
                400,
                "Invalid parameter",
                "ack=true acknowledges `after`: expected after=SEQ with it",
                parameter="ack",
            )
        # the page read ahead is checked while the ack commits (each waits on a thread) when no
        # long poll can come between: records after `after` are committed already
        if svc.ahead(cid) is not None and journal.committed_seq > after:
            check = asyncio.create_task(svc.prepared(cid, after, limit))
        try:
            await acknowledge(svc, cid, after)
        except BaseException:
            if check is not None:  # a refused ack serves no page
                check.cancel()
                await asyncio.gather(check, return_exceptions=True)
            raise
    elif after is not None and after > journal.committed_seq:
        await past_the_end(svc, after)
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
    page = await (check if check is not None else svc.prepared(cid, after, limit))
    if page is None:
        async with svc.page_slots:
            page = await asyncio.to_thread(svc.page, cid, after, limit)
    svc.served_rows += page.served
    if page.more:  # built while this one travels and the consumer stores it
        svc.read_ahead(cid, page.next, limit)
    await privacy.audit_reads(
        svc.runtime, principal, privacy.route_of(request.method, request.path), page.counts
    )
    return web.Response(body=page.body, content_type="application/json")


async def past_the_end(svc: PullService, after: int) -> None:
    """Refuse a page after a seq the journal never committed (a cursor kept across a journal
    that was replaced, a seq made up): its answer would be an empty page with `next` = `after`,
    for ever, and a consumer that does not ack would wait on it without a word. A 400 as an ack
    past the end gets, with the last committed seq to go on from. The rows a page read may be
    committed a moment before `committed_seq` says so: the journal itself is asked first."""
    reader = svc.reader
    if await asyncio.to_thread(reader.first_at_or_after, after) is not None:
        return
    committed = svc.runtime.journal.committed_seq
    if after <= committed:
        return
    raise Problem(
        400,
        "After past the end",
        f"after={after} is past the journal's end: the last committed seq is {committed}; ask "
        f"for the records after a seq at most {committed} (or leave after out: the consumer's cursor)",
        committed=committed,
    )


async def ack(request: web.Request) -> web.Response:
    principal = require(request, "pull")
    cid = request.match_info["id"]
    svc = request.app[PULL_KEY]
    if consumer_of(principal, svc) != cid:
        raise Problem(
            403, "Forbidden", f"this credential belongs to consumer {principal.consumer!r}, not {cid!r}"
        )
    body = await read_json(request, max_bytes=4096)
    seq = body.get("seq") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"seq"} or type(seq) is not int or seq < 0:
        raise Problem(
            400, "Invalid acknowledgement", 'expected a JSON object {"seq": N} with an integer N >= 0'
        )
    await acknowledge(svc, cid, seq)
    return json_response({"consumer": cid, "cursor": seq, "committed": svc.runtime.journal.committed_seq})


async def acknowledge(svc: PullService, cid: str, seq: int) -> None:
    """Move consumer `cid`'s cursor to `seq`, durably (committed before this returns): a 400 past
    the last committed seq, a 409 below the cursor; the same seq again changes nothing."""
    journal = svc.runtime.journal
    async with svc.ack_lock:
        committed = journal.committed_seq
        # a page's `next` may name a row committed a moment before `committed_seq` says so: the
        # journal itself is asked first, as for a page's `after`
        if seq > committed and await asyncio.to_thread(svc.reader.first_at_or_after, seq) is not None:
            committed = seq
        if seq > committed:
            raise Problem(
                400,
                "Ack past the end",
                f"seq {seq} was never committed; the last committed seq is {committed}",
                committed=committed,
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
        cid = consumer_of(principal, svc)
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
