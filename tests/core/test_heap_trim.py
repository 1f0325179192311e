"""The running service gives the heap it freed back to the system now and then (glibc keeps it
resident otherwise), from a task on its event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from edge import service
from tests.core.test_service import SITE
from tests.support.site import site_file
from tests.support.waiting import until_async

TRIMMED = "freed heap given back to the system"


async def test_the_service_trims_its_heap_again_and_again_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if service._libc() is None:
        pytest.skip("malloc_trim is glibc's; elsewhere there is nothing to trim")
    monkeypatch.setattr(service, "TRIM_EVERY", 0.05)
    caplog.set_level(logging.DEBUG, logger="edge.service")
    ready = asyncio.Event()
    running = asyncio.create_task(
        service.serve(str(site_file(tmp_path, SITE)), check=lambda site: [], on_ready=lambda rt: ready.set())
    )

    async def up() -> bool:
        return ready.is_set() or running.done()

    await until_async(up, timeout=60, what="the site up")
    assert not running.done(), running.result()  # serve returned before the site was up: its exit code

    async def trims() -> bool:
        return sum(r.getMessage() == TRIMMED for r in caplog.records) >= 3

    try:
        await until_async(trims, timeout=30, what="three heap trims")
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # serve's own handler: the way systemd stops it
        assert await asyncio.wait_for(running, 60) == 0
