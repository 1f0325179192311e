"""A sink that cannot even build its request (a header value with a control character: a token
read with its trailing newline) fails like any other attempt: counted, backed off, shown as its
last error and logged once, not a traceback a second; it delivers once the cause is gone."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from edge.model import Reading
from tests.support.site import running_site
from tests.support.waiting import until
from tests.sync.helpers import sink


async def test_a_request_that_cannot_be_built_is_a_counted_failure(
    tmp_path: Path,
    receiver,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rx = receiver("--token", "secret")
    monkeypatch.setenv("CENTRAL_TOKEN", "secret")
    doc = {"upstream": [sink(rx.url, token_env="CENTRAL_TOKEN", retry={"initial": "20ms", "max": "100ms"})]}
    caplog.set_level(logging.WARNING, logger="edge.sync")
    async with running_site(tmp_path, doc, web=False) as rt:
        s = rt.components["sync"].sinks["central"]
        # as read from a file or variable ending in a newline: aiohttp refuses the header
        s.token = "secret\n"
        rt.hub.ingest([Reading(time.time(), "dev.p", float(i)) for i in range(10)])
        committed = await rt.journal.flush()
        await until(lambda: s.failures >= 5, timeout=20, what="failed attempts to be counted")
        status = s.status()
        assert status["cursor"] < committed
        assert status["retries"] >= 4
        assert "control character" in status["last_error"], status["last_error"]
        # the same error again is no news: logged once, with the cause
        logged = [r for r in caplog.records if "control character" in r.getMessage()]
        assert len(logged) == 1, [r.getMessage() for r in logged]

        s.token = "secret"  # the cause fixed: the backlog goes
        await until(lambda: s.cursor >= committed, timeout=20, what="the backlog to be delivered")
    seqs = {q for e in await rx.accepted() for q in e["seqs"]}
    assert set(range(1, committed + 1)) <= seqs
