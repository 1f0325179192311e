"""A firing's actions still running when the gateway stops (a restart, an upgrade) get a short
grace to finish; what is cancelled after it is counted and journaled, and the alert that followed
a hung webhook in the same `then:` list is still journaled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from edge.model import Reading
from rules.actions import SHUTDOWN_GRACE
from tests.support.servers import serving
from tests.support.site import running_site
from tests.support.waiting import until


class Receiver:
    """A real webhook receiver on 127.0.0.1 that answers nothing until released."""

    def __init__(self) -> None:
        self.port = 0
        self.posts: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    async def hook(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        await self.release.wait()
        return web.Response(status=200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    async with serving({"/hook": r.hook}, shutdown_timeout=0.1) as port:
        r.port = port
        try:
            yield r
        finally:
            r.release.set()


def site(port: int) -> dict[str, Any]:
    return {
        "devices": [{"id": "bin-1", "driver": "sim", "points": [{"name": "fill_pct", "interval": "1h"}]}],
        "rules": {"webhook_allow": [f"127.0.0.1:{port}"]},
    }


def rule(port: int) -> dict[str, Any]:
    return {
        "id": "bin-full",
        "when": [{"point": "bin-1.fill_pct"}],
        "if": "value >= 85",
        "severity": "warning",
        "then": [
            # a webhook that outlives any stop: the gateway must not wait for its timeout
            {"webhook": {"url": f"http://127.0.0.1:{port}/hook", "timeout": "60s", "retries": 0}},
            {"alert": "bin is {value:.0f}% full"},
        ],
    }


async def journaled_events(tmp_path: Path, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The events in the journal the stopped gateway left (read by starting it again)."""
    async with running_site(tmp_path, doc, web=False) as rt:
        await rt.journal.flush()
        return [r for r in rt.journal.tail(500) if r.get("type") == "event"]


async def test_an_alert_after_a_hung_webhook_is_journaled_and_the_cancellation_reported(
    tmp_path: Path, receiver: Receiver
) -> None:
    doc = site(receiver.port)
    async with running_site(tmp_path, doc, web=False) as rt:
        comp = rt.components["rules"]
        comp.put(rule(receiver.port), "test", "create")
        actions = comp.actions
        rt.hub.ingest([Reading(time.time(), "bin-1.fill_pct", 95.0)])
        await until(lambda: receiver.posts, what="the webhook posted and hanging")
        stopping = time.monotonic()
    stopped_in = time.monotonic() - stopping
    # bounded by the grace, not by the webhook's timeout (60 s)
    assert SHUTDOWN_GRACE - 0.5 <= stopped_in < SHUTDOWN_GRACE + 3, stopped_in
    # the grace the operator reads about, far from the service's stop timeout (20 s)
    assert SHUTDOWN_GRACE <= 5
    docs = (Path(__file__).parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")
    assert f"get up to {SHUTDOWN_GRACE:g} s in all" in docs
    assert (actions.executed, actions.failed, actions.cancelled) == (1, 0, 1)
    assert comp.status()["actions_cancelled"] == 1

    events = await journaled_events(tmp_path, doc)
    alerts = [e for e in events if e["kind"] == "alert" and e["source"] == "bin-full"]
    assert len(alerts) == 1 and alerts[0]["payload"]["message"] == "bin is 95% full"
    (cancelled,) = [e for e in events if e["kind"] == "rule_actions_cancelled"]
    assert cancelled["payload"]["rules"] == ["bin-full"]
    assert cancelled["payload"]["cancelled"] == 1 and cancelled["payload"]["per_rule"] == {"bin-full": 1}
    assert cancelled["payload"]["journaled_at_stop"] == 1
    assert cancelled["severity"] == "warning"
    # before the gateway's own last word: it reached the journal before it closed
    stopped = [e for e in events if e["kind"] == "gateway_stopped"]
    assert stopped and cancelled["seq"] < stopped[0]["seq"]


async def test_a_webhook_that_answers_within_the_grace_completes(tmp_path: Path, receiver: Receiver) -> None:
    doc = site(receiver.port)
    async with running_site(tmp_path, doc, web=False) as rt:
        comp = rt.components["rules"]
        comp.put(rule(receiver.port), "test", "create")
        actions = comp.actions
        rt.hub.ingest([Reading(time.time(), "bin-1.fill_pct", 95.0)])
        await until(lambda: receiver.posts, what="the webhook posted and hanging")
        stop = asyncio.create_task(rt.stop())
        await until(lambda: actions.closing, what="the rules waiting for their actions")
        assert not stop.done()
        receiver.release.set()  # the receiver answers while the gateway is stopping
        await asyncio.wait_for(stop, SHUTDOWN_GRACE + 3)
    assert (actions.executed, actions.failed, actions.cancelled) == (2, 0, 0)

    events = await journaled_events(tmp_path, doc)
    assert [e["payload"]["message"] for e in events if e["kind"] == "alert"] == ["bin is 95% full"]
    assert not [e for e in events if e["kind"] in ("rule_actions_cancelled", "rule_action_failed")]
