"""A receiver that refuses everything does not make dead letters breed: each refused record is one
dead letter with one `sync_dead_letter` notice; the notice, refused in turn, is stored and counted
but raises no notice of its own (each notice became the next dead letter, for ever: 150 a second
until the receiver was stopped)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from edge.model import Reading
from edge.sync.component import SyncComponent
from tests.store.helpers import sql
from tests.support.site import running_site
from tests.support.waiting import until_async
from tests.sync.helpers import answering_with, sink


@pytest.fixture
async def refusing() -> AsyncIterator[str]:
    """A receiver answering 400 to every batch."""

    async def ingest(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=400, text="schema mismatch")

    async with answering_with(ingest) as url:
        yield url


async def test_refused_dead_letter_notices_raise_no_more_notices(tmp_path: Path, refusing: str) -> None:
    async with running_site(tmp_path, {"upstream": [sink(refusing)]}, web=False) as rt:
        central = rt.component(SyncComponent).sinks["central"]  # type: ignore[union-attr]
        t = time.time()
        rt.hub.ingest([Reading(t + i * 1e-3, "dev.p", float(i)) for i in range(3)])

        async def settled() -> bool:
            committed = await rt.journal.flush()  # notices published meanwhile are committed too
            return central.cursor >= committed and await rt.journal.flush() == committed

        await until_async(settled, timeout=30, what="the sink past everything journaled")
        notices = sql(rt.journal, "SELECT count(*) FROM journal WHERE kind = 'sync_dead_letter'")[0][0]
        started = sql(rt.journal, "SELECT count(*) FROM journal WHERE kind IS NOT 'sync_dead_letter'")[0][0]
    # every record but the notices was refused once and noticed once; each notice refused once
    assert notices == started >= 4  # 3 readings and gateway_started at least
    assert central.dead_letters == started + notices
