"""The sync component: runs every push sink of the site and keeps the pull consumers' cursors.

`create(ctx)` (ctx: the runtime's narrow `ComponentContext`) returns None for a site with neither `upstream:` nor `consumers:`. Declared
consumers get their cursor registered at start, so retention keeps their data even before they
first connect.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from edge.plugins import registry
from edge.sync import metrics
from edge.sync.base import LinkBoard, PushSink

if TYPE_CHECKING:
    from prometheus_client import Metric

    from edge.plugins import ComponentContext
    from edge.store import Journal


def consumer_status(journal: Journal, consumer_id: str) -> dict[str, Any]:
    found = journal.consumer_cursor(consumer_id)
    cursor, updated = found if found is not None else (0, None)
    backlog = max(0, journal.committed_seq - cursor)
    oldest = journal.oldest_after(cursor) if backlog else None
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

    async def start(self) -> None:
        for c in self.ctx.site.consumers:
            await self.ctx.journal.register_cursor(c.id, "consumer")
        for sink in self.sinks.values():
            await sink.start()

    async def stop(self) -> None:
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

    def status(self) -> dict[str, Any]:
        return {
            "sinks": [s.status() for s in self.sinks.values()],
            "consumers": [consumer_status(self.ctx.journal, cid) for cid in self.consumer_ids()],
        }

    def collect_metrics(self) -> Iterator[Metric]:
        return metrics.families(self.status())


def create(ctx: ComponentContext) -> SyncComponent | None:
    if not ctx.site.upstream and not ctx.site.consumers:
        return None
    return SyncComponent(ctx)
