"""A receiver's answer is never unpacked whole: a sink reads a 2xx answer's first 64 KiB raw and
drops it, and the start of an error answer, gzip or not, is unpacked no further than the text it
keeps. A real aiohttp receiver answers every batch with a gzip body that unpacks to 256 MiB: the
sink delivers, and the gateway's peak memory does not grow by anything near it (it grew by the
whole body when the answer was read and unpacked)."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from edge.model import Reading
from edge.sync.component import SyncComponent
from tests.support.site import running_site
from tests.sync.helpers import answering_with, sink, wait_for

UNPACKED = 256 * 1024 * 1024


def reset_peak_rss() -> None:
    """Start this process's VmHWM afresh (Linux: `5` to clear_refs), whatever ran in it before."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[int]]]:
    """Answers 200 with a gzip bomb to the first batches, then 400 with a gzip text to one
    holding the point `bad.p`; counts the batches."""
    bomb = gzip.compress(bytes(UNPACKED), compresslevel=9)
    batches: list[int] = []

    async def ingest(request: web.Request) -> web.Response:
        body = await request.read()  # unpacked by this (test) server from the sink's gzip
        batches.append(len(body))
        if b"bad.p" in body:
            text = gzip.compress(b"record bad.p refused: unit missing")
            return web.Response(status=400, body=text, headers={"Content-Encoding": "gzip"})
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async with answering_with(ingest, max_body=64 * 1024 * 1024) as url:
        yield url, batches


async def test_a_receivers_compressed_answer_is_not_unpacked_whole(
    tmp_path: Path, receiver: tuple[str, list[int]]
) -> None:
    url, batches = receiver
    reset_peak_rss()
    before = peak_rss_mb()  # the gateway's first batch (its gateway_started) is answered too
    async with running_site(tmp_path, {"upstream": [sink(url)]}, web=False) as rt:
        central = rt.component(SyncComponent).sinks["central"]  # type: ignore[union-attr]
        t = time.time()
        rt.hub.ingest([Reading(t + i * 1e-3, "dev.p", float(i)) for i in range(5)])
        committed = await rt.journal.flush()
        await wait_for(lambda: central.cursor >= committed, 20, "the readings delivered")
        assert batches and central.status()["sent_rows"] >= 5
        grown = peak_rss_mb() - before
        assert grown < UNPACKED / 1024 / 1024 / 4, f"peak memory grew {grown:.0f} MB reading the answer"

        rt.hub.ingest([Reading(time.time(), "bad.p", 1.0)])
        committed = await rt.journal.flush()
        await wait_for(
            lambda: central.cursor >= committed and central.dead_letters == 1, 20, "the dead letter"
        )
    from edge.state import StateDB
    from edge.sync import deadletters

    state = StateDB(str(tmp_path / "state.db"))
    try:
        [letter] = deadletters.listing(state, "central", None, 10)
    finally:
        state.close()
    assert letter["status"] == 400 and letter["response"] == "record bad.p refused: unit missing"
