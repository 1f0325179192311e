"""Webhooks go only where the site file allows (`rules.webhook_allow`), and a failed post tells the
rule's author nothing about the remote's ports: refused, timed out, unresolvable and TLS failures
are journaled as one message, with the cause only in the gateway log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from edge.config import ConfigError
from edge.model import Reading
from rules.model import RulePackError, compile_pack
from tests.rules.test_live import Collector
from tests.support.ports import free_port
from tests.support.servers import serving
from tests.support.site import load, running_site
from tests.support.waiting import until

PACK = """rules:
  - id: ok-hook
    when: d.x
    then:
      - webhook: https://central.example.org/hook
  - id: lan-hook
    when: d.x
    then:
      - alert: "{value}"
      - webhook: {url: "http://10.0.0.7:8080/x", retries: 0}
"""


def test_a_pack_webhook_to_a_host_not_allowed_is_an_error_with_file_and_line() -> None:
    assert (
        len(compile_pack(PACK, "site-rules.yaml", webhook_allow=["central.example.org", "10.0.0.7:8080"]))
        == 2
    )
    with pytest.raises(RulePackError) as err:
        compile_pack(PACK, "site-rules.yaml", webhook_allow=["central.example.org", "10.0.0.7:443"])
    (problem,) = err.value.problems
    assert problem.startswith("site-rules.yaml:10: ")
    assert "webhook to 10.0.0.7 is not allowed" in problem and "'10.0.0.7:8080'" in problem
    assert "webhook_allow" in problem
    with pytest.raises(RulePackError) as err:  # the default: no webhook at all
        compile_pack(PACK, "site-rules.yaml", webhook_allow=[])
    assert [p.split(":")[1] for p in err.value.problems] == ["5", "10"]


def test_a_bad_allow_list_entry_names_the_key_and_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"rules": {"webhook_allow": ["central.example.org", "https://x.example/"]}})
    text = str(err.value)
    assert "webhook_allow" in text and "https://x.example/" in text and "host:port" in text
    site = load(
        tmp_path, {"rules": {"webhook_allow": ["Central.Example.org.", "10.0.0.5:8443", "[fd00::5]:443"]}}
    )
    assert site.sections["rules"].webhook_allow[1] == "10.0.0.5:8443"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[int, list[dict[str, Any]], asyncio.Event]]:
    """A real HTTP receiver on 127.0.0.1: /ok answers 200, /busy 503, /hang never answers."""
    hits: list[dict[str, Any]] = []
    never = asyncio.Event()

    async def ok(request: web.Request) -> web.Response:
        hits.append(await request.json())
        return web.Response(status=200)

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503)

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(status=200)

    async with serving({"/ok": ok, "/busy": busy, "/hang": hang}, shutdown_timeout=0.1) as port:
        try:
            yield port, hits, never
        finally:
            never.set()


def _hook(rule_id: str, url: str, timeout: str = "5s") -> dict[str, Any]:
    return {
        "id": rule_id,
        "when": "d.x",
        "then": [{"webhook": {"url": url, "retries": 0, "timeout": timeout}}],
    }


def _site(*allow: str) -> dict[str, Any]:
    return {"devices": [], "rules": {"max_actions_per_minute": 600, "webhook_allow": list(allow)}}


async def _fire(rt: Any, rules: list[dict[str, Any]]) -> dict[str, str]:
    """Fire every rule once; the journaled error of each rule whose action failed."""
    events = Collector(rt)
    for rule in rules:
        rt.components["rules"].put(rule, "test", "create")
    rt.hub.ingest([Reading(time.time(), "d.x", 1)])
    failed = await until(
        lambda: len(events.kind("rule_action_failed")) == len(rules) and events.kind("rule_action_failed"),
        timeout=20,
        what="every webhook failing",
    )
    return {e.source: e.payload["error"] for e in failed}


async def test_an_allowed_destination_receives_the_post(
    tmp_path: Path, receiver: tuple[int, list[dict[str, Any]], asyncio.Event]
) -> None:
    port, hits, _ = receiver
    async with running_site(tmp_path, _site(f"127.0.0.1:{port}"), web=False) as rt:
        events = Collector(rt)
        rt.components["rules"].put(_hook("hook", f"http://127.0.0.1:{port}/ok"), "test", "create")
        rt.hub.ingest([Reading(time.time(), "d.x", 7)])
        await until(lambda: hits, what="the post")
        assert hits[0]["rule"] == "hook" and hits[0]["value"] == 7
        assert not events.kind("rule_action_failed")


async def test_failures_of_an_allowed_destination_all_read_the_same(
    tmp_path: Path,
    receiver: tuple[int, list[dict[str, Any]], asyncio.Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, hits, _ = receiver
    closed = free_port()
    rules = [
        _hook("refused", f"http://127.0.0.1:{closed}/"),
        _hook("timeout", f"http://127.0.0.1:{port}/hang", timeout="500ms"),
        _hook("unresolvable", "http://no-such-host.invalid/", timeout="3s"),
        _hook("tls", f"https://127.0.0.1:{port}/ok"),  # a plain HTTP server: the handshake fails
        _hook("status", f"http://127.0.0.1:{port}/busy"),
    ]
    caplog.set_level(logging.WARNING, logger="rules.actions")
    async with running_site(tmp_path, _site("127.0.0.1", "no-such-host.invalid"), web=False) as rt:
        errors = await _fire(rt, rules)
    generic = "RuntimeError: webhook to {} failed"
    assert errors["refused"] == errors["timeout"] == errors["tls"] == generic.format("127.0.0.1")
    assert errors["unresolvable"] == generic.format("no-such-host.invalid")
    assert str(closed) not in str(errors)
    assert errors["status"] == generic.format("127.0.0.1") + ": HTTP 503"  # a status it may know
    assert not hits
    # the operator still learns the cause, from the gateway log
    detail = "\n".join(r.getMessage() for r in caplog.records)
    assert f"webhook http://127.0.0.1:{closed}/ attempt 1" in detail
    assert "no-such-host.invalid/ attempt 1" in detail


async def test_a_name_that_resolves_to_the_gateway_itself_is_refused_at_send_time(
    tmp_path: Path,
    receiver: tuple[int, list[dict[str, Any]], asyncio.Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The allow-list names hosts; DNS decides the address. A name resolving to loopback is not
    posted to unless the list names that address itself."""
    port, hits, _ = receiver
    caplog.set_level(logging.WARNING, logger="rules.actions")
    async with running_site(tmp_path, _site("localhost"), web=False) as rt:
        errors = await _fire(rt, [_hook("loop", f"http://localhost:{port}/ok")])
    assert errors == {"loop": "RuntimeError: webhook to localhost failed"}
    assert not hits
    assert "addresses no webhook may reach" in "\n".join(r.getMessage() for r in caplog.records)


async def test_a_rule_stored_before_the_allow_list_changed_does_not_post(
    tmp_path: Path, receiver: tuple[int, list[dict[str, Any]], asyncio.Event]
) -> None:
    port, hits, _ = receiver
    async with running_site(tmp_path, _site("127.0.0.1"), web=False) as rt:
        rt.components["rules"].put(_hook("old", f"http://127.0.0.1:{port}/ok"), "test", "create")
    # the site no longer allows that host; the stored rule loads, and its webhook is refused at send time
    async with running_site(tmp_path, _site("127.0.0.2"), web=False) as rt:
        events = Collector(rt)
        rt.hub.ingest([Reading(time.time(), "d.x", 1)])
        failed = await until(
            lambda: events.kind("rule_action_failed"), timeout=20, what="the webhook failing"
        )
        errors = {e.source: e.payload["error"] for e in failed}
    assert errors == {
        "old": "RuntimeError: webhook to 127.0.0.1 refused: rules.webhook_allow does not name it"
    }
    assert not hits


async def test_a_rule_whose_host_is_no_longer_allowed_can_be_disabled_but_not_enabled(tmp_path: Path) -> None:
    from rules.model import RuleErrors

    rule = _hook("old", "http://127.0.0.1:9/ok")
    async with running_site(tmp_path, _site("127.0.0.1"), web=False) as rt:
        rt.components["rules"].put(rule, "test", "create")
    async with running_site(tmp_path, _site("127.0.0.2"), web=False) as rt:
        comp = rt.components["rules"]
        stored = comp.set_enabled("old", False, "test")
        assert stored is not None and stored.enabled is False
        with pytest.raises(RuleErrors, match="webhook_allow"):
            comp.set_enabled("old", True, "test")
        assert comp.store.get("old").enabled is False
