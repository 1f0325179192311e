"""Backoff against real receiver processes on 127.0.0.1: a server's Retry-After is a floor nothing
shortens, the link coming back wakes only sinks that got no answer, and a sink that keeps failing
does not rewrite its status snapshot in the state DB while nothing changes."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.model import Reading
from edge.sync.retry import MAX_RETRY_AFTER, parse_retry_after
from tests.support.site import running_site
from tests.sync.helpers import Receiver, sink, wait_for


@pytest.fixture
def failing_and_ok(receiver: Callable[..., Receiver]) -> tuple[Receiver, Receiver]:
    """A receiver that answers every batch with HTTP 500 (until told otherwise), and one that
    accepts every batch."""
    return receiver("--fail", "1", "--modes", "500"), receiver()


def _upstream(*sinks: dict[str, object]) -> dict[str, Any]:
    """A site whose `upstream:` section is `sinks` (and nothing else)."""
    return {"upstream": list(sinks)}


async def steady_round(rt: Any, sink_id: str) -> None:
    """Journal one reading and wait until sink `sink_id` has passed it (a success, or a batch
    its filters withheld whole)."""
    rt.hub.ingest([Reading(time.time(), "dev.p", 1.0)])
    committed = await rt.journal.flush()
    s = rt.components["sync"].sinks[sink_id]
    await wait_for(lambda: s.cursor >= committed, 10, f"sink {sink_id} to pass seq {committed}")


async def test_retry_after_is_a_floor_another_sinks_success_does_not_shorten(
    tmp_path: Path, receiver: Callable[..., Receiver]
) -> None:
    limited = receiver("--fail", "1", "--modes", "429", "--retry-after", "3")
    ok = receiver()
    doc = _upstream(
        sink(limited.url, id="limited", retry={"initial": "10ms", "max": "1s"}),
        sink(ok.url, id="steady"),
    )
    async with running_site(tmp_path, doc) as rt:

        async def answered(n: int) -> bool:
            return len(await limited.log()) >= n

        await wait_for(lambda: answered(1), 10, "the first 429")
        # the other sink, on the same host, succeeds again and again while the first one waits
        # (retry.max 1s is below the server's 3 s: the server's floor wins over the cap too)
        while not await answered(2):
            await steady_round(rt, "steady")
        first, second = (await limited.log())[:2]
        assert first["outcome"] == second["outcome"] == "429"
        between = [e for e in await ok.accepted() if first["t"] < e["t"] < second["t"]]
        assert len(between) >= 2, "the other sink did not succeed during the wait"
        # the receiver's own arrival times (a loaded machine only spaces them further apart)
        assert second["t"] - first["t"] >= 3.0, (first, second)


async def test_a_sink_the_server_fails_is_not_woken_by_another_sinks_success(
    tmp_path: Path, failing_and_ok: tuple[Receiver, Receiver]
) -> None:
    failing, ok = failing_and_ok
    # a first backoff drawn from [0, 60 s] is over 5 s at once 92 % of the time
    doc = _upstream(
        sink(failing.url, id="failing", retry={"initial": "60s", "max": "120s", "probe_every": "100ms"}),
        sink(ok.url, id="steady"),
    )
    async with running_site(tmp_path, doc) as rt:
        s = rt.components["sync"].sinks["failing"]
        await wait_for(lambda: (s.status()["retry_in_s"] or 0) > 5, 60, "a long backoff after a 500")
        failures, requests = s.failures, len(await failing.log())
        for _ in range(5):
            await steady_round(rt, "steady")
        assert len(await ok.accepted()) >= 5
        assert len(await failing.log()) == requests and s.failures == failures
        assert (s.status()["retry_in_s"] or 0) > 0 and "HTTP 500" in s.last_error


async def test_a_failing_sink_writes_its_status_only_when_it_changes(
    tmp_path: Path, failing_and_ok: tuple[Receiver, Receiver]
) -> None:
    failing, ok = failing_and_ok
    doc = _upstream(
        sink(failing.url, id="failing", retry={"initial": "200ms", "max": "400ms"}),
        # passes every reading without sending it: its cursor moves, nothing else does
        sink(ok.url, id="alerts", include={"readings": False, "event_kinds": ["alert"]}),
    )
    async with running_site(tmp_path, doc) as rt:
        state = rt.state
        s = rt.components["sync"].sinks["failing"]

        def stored(sink_id: str) -> dict[str, Any] | None:
            with state.lock:
                row = state.conn.execute("SELECT status FROM sync_status WHERE sink=?", (sink_id,)).fetchone()
            return orjson.loads(row[0]) if row else None

        # the first failure is news: `edge sync status` shows it while the gateway runs
        await wait_for(
            lambda: "HTTP 500" in ((stored("failing") or {}).get("last_error") or ""),
            10,
            "the failing sink's error in the state DB",
        )
        await steady_round(rt, "alerts")
        writes: list[str] = []
        state.conn.set_trace_callback(lambda sql: writes.append(sql) if "sync_status" in sql else None)
        try:
            for _ in range(6):  # a few backoff cycles (about 2-4 s), a record passed in each
                failed = s.failures
                await steady_round(rt, "alerts")

                def two_more(n: int = failed) -> bool:
                    return bool(s.failures >= n + 2)

                await wait_for(two_more, 10, "two more failed attempts")
            assert writes == [], writes
            # a change is written: the receiver recovers, the last success moves
            await failing.control(fail=0)
            await wait_for(lambda: s.cursor >= rt.journal.committed_seq, 10, "the failing sink's delivery")
            await wait_for(lambda: bool(writes), 5, "the snapshot of the first success")
        finally:
            state.conn.set_trace_callback(None)
        await wait_for(
            lambda: (stored("failing") or {}).get("last_success") is not None, 5, "a stored success"
        )


def test_retry_after_values() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 120 ") == 120.0
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28.0 <= (parse_retry_after(soon) or 0) <= 31.0
    assert parse_retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
    assert parse_retry_after("99999999999") == MAX_RETRY_AFTER
    for bad in (None, "", "-1", "1.5", "soon", "Mon, 99 Foo 2020"):
        assert parse_retry_after(bad) is None, bad
