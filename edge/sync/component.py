"""The sync component: runs every push sink of the site and keeps the pull consumers' cursors.

`create(ctx)` (ctx: the runtime's narrow `ComponentContext`) returns None for a site with neither `upstream:` nor `consumers:`. Declared
consumers get their cursor registered at start, so retention keeps their data even before they
first connect.

The sinks' dead letters expire at their privacy class's retention (PIPL art. 19) with the journal's
retention passes and under its clock guard (`Journal.add_expirer`): personal and sensitive ones
once dead-lettered longer ago than their class's retention, public ones never by age while their
sink is in the site file, and at the public class's retention once it is not (nothing can retry
them then); those are listed in the status as `removed_sinks` until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from edge.model import Event, Privacy, Severity
from edge.plugins import registry
from edge.store.journal import RANK_NAMES
from edge.store.records import IncludeConfig, RecordFilter
from edge.sync import deadletters, metrics
from edge.sync.base import LinkBoard, PushSink

if TYPE_CHECKING:
    from prometheus_client import Metric

    from edge.plugins import ComponentContext
    from edge.store import Journal

log = logging.getLogger("edge.sync")

#: the removed sinks' dead letters are counted this often at most (the status is read at every
#: scrape; a count reads every letter of those sinks)
REMOVED_SINKS_EVERY_S = 30.0


def consumer_status(journal: Journal, consumer_id: str) -> dict[str, Any]:
    found = journal.consumer_cursor(consumer_id)
    cursor, updated = found if found is not None else (0, None)
    # what the consumer can still fetch: records dropped before it did are counted as drops
    backlog, oldest = journal.unsent(cursor, journal.committed_seq)
    return {
        "id": consumer_id,
        "cursor": cursor,
        "backlog_rows": backlog,
        "oldest_unsent_age_s": round(max(0.0, time.time() - oldest), 3) if oldest else 0.0,
        "last_ack": updated if cursor > 0 else None,
    }


class SyncComponent:
    name = "sync"

    def __init__(self, ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.links = LinkBoard()
        self.sinks: dict[str, PushSink] = {}
        for cfg in ctx.site.upstream:
            if not cfg.enabled:
                continue
            cls = registry().sink(cfg.type)
            self.sinks[cfg.id] = cls(cfg, ctx, self.links)
        # the class of a dead letter stored before classes were (the sinks' own rule)
        self._classes = RecordFilter(IncludeConfig(), Privacy.SENSITIVE, lambda: ctx.hub.points)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._removed_sinks: tuple[float, list[dict[str, Any]]] | None = None  # (when, removed_sinks)

    async def start(self) -> None:
        for c in self.ctx.site.consumers:
            await self.ctx.journal.register_cursor(c.id, "consumer")
        for sink in self.sinks.values():
            await sink.start()
        # dead letters expire while the site has sinks, and after its last one was removed or
        # disabled too (each sink's start created the tables)
        if self.sinks or deadletters.created(self.ctx.state):
            deadletters.ensure(self.ctx.state)
            self._loop = asyncio.get_running_loop()
            self.ctx.journal.add_expirer(self.expire_dead_letters)

    def expire_dead_letters(self, now: float, retention_s: Mapping[int, float | None]) -> list[Event]:
        """The journal's expirer (in its writer thread, by the trusted wall time `now`): the dead
        letters of every sink, running or not, past their class's retention are deleted; one
        `dead_letters_expired` event per class with some deleted. The running sinks recount theirs
        on the event loop."""
        state = self.ctx.state
        classified = deadletters.classify(state, self._classes.rank)  # rows of before the class column
        if classified:
            log.info("sync: %d dead letters stored without a privacy class were classified", classified)
        gone = deadletters.expire(state, now, retention_s, self.configured())
        if not gone:
            return []
        self.recount_removed()
        per_sink: Counter[str] = Counter()
        events = []
        for rank, sinks in gone.items():
            per_sink.update(sinks)
            count = sum(sinks.values())
            payload = {
                "class": RANK_NAMES[rank],
                "count": count,
                "sinks": dict(sinks),
                "retention_s": retention_s[rank],
            }
            events.append(Event("dead_letters_expired", self.ctx.site.site.id, Severity.INFO, payload, now))
            log.info(
                "sync: %d %s dead letters past their retention (%s s) were deleted",
                count,
                RANK_NAMES[rank],
                retention_s[rank],
            )
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: a stopped gateway
                self._loop.call_soon_threadsafe(self._dead_letters_gone, dict(per_sink))
        return events

    def _dead_letters_gone(self, per_sink: dict[str, int]) -> None:
        if self._loop is None:  # stopped since: the sinks recount at their next start
            return
        for sink_id, count in per_sink.items():
            sink = self.sinks.get(sink_id)
            if sink is not None:
                sink.dead_letters_gone(count)

    async def stop(self) -> None:
        self._loop = None
        for sink in self.sinks.values():
            await sink.stop()

    def consumer_ids(self) -> list[str]:
        declared = [c.id for c in self.ctx.site.consumers]
        extra = sorted(
            name
            for name, (kind, _seq, _u) in self.ctx.journal.cursors().items()
            if kind == "consumer" and name not in declared
        )
        return declared + extra

    def configured(self) -> set[str]:
        """The ids of the site file's sinks, enabled or not: their dead letters are theirs."""
        return {cfg.id for cfg in self.ctx.site.upstream}

    def recount_removed(self) -> None:
        """Count the removed sinks' dead letters again at the next status (one was deleted)."""
        self._removed_sinks = None

    def removed_sinks(self) -> list[dict[str, Any]]:
        """Sinks no longer in the site file (removed or renamed) that left dead letters: each
        with how many, until they are deleted or expire (docs/sync.md, *Dead letters*)."""
        state = self.ctx.state
        if state is None:
            return []
        now = time.monotonic()
        cached = self._removed_sinks
        if cached is None or now - cached[0] >= REMOVED_SINKS_EVERY_S:  # read at every scrape
            held = deadletters.held_by_sinks(state, self.configured())
            cached = self._removed_sinks = (
                now,
                [{"id": s, "dead_letters": n} for s, n in sorted(held.items())],
            )
        return cached[1]

    def status(self) -> dict[str, Any]:
        return {
            "sinks": [s.status() for s in self.sinks.values()],
            "consumers": [consumer_status(self.ctx.journal, cid) for cid in self.consumer_ids()],
            "removed_sinks": self.removed_sinks(),
        }

    def collect_metrics(self) -> Iterator[Metric]:
        return metrics.families(self.status())


def create(ctx: ComponentContext) -> SyncComponent | None:
    if not ctx.site.upstream and not ctx.site.consumers:
        return None
    return SyncComponent(ctx)
