"""A reload (SIGHUP) of a site file whose `rules:` changed applies what the engine reads at each
action or save (where webhooks may post, their timeout and retries, the action budget, the window
limits) and names `rules.enabled` and `rules.packs` as waiting for a restart: a reload that said
`applied=rules` while the engine kept its old allow-list let a host the operator had just removed
keep receiving the site's data."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from edge.config import load_site
from edge.model import Reading
from edge.runtime import Runtime
from edge.service import reload
from rules.component import RulesComponent
from rules.config import RulesConfig
from rules.model import RuleErrors
from tests.rules.test_live import Collector
from tests.support.servers import serving
from tests.support.site import site_file
from tests.support.waiting import until


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    """A real HTTP receiver on 127.0.0.1 that accepts every post."""
    hits: list[dict[str, Any]] = []

    async def ok(request: web.Request) -> web.Response:
        hits.append(await request.json())
        return web.Response(status=200)

    async with serving({"/ok": ok}, shutdown_timeout=0.1) as port:
        yield port, hits


def _hook(rule_id: str, url: str) -> dict[str, Any]:
    return {
        "id": rule_id,
        "when": "d.x",
        "notify": "always",
        "then": [{"webhook": {"url": url, "retries": 0}}],
    }


@contextlib.asynccontextmanager
async def _gateway(
    tmp_path: Path, rules_section: dict[str, Any]
) -> AsyncIterator[tuple[Runtime, RulesComponent, Path]]:
    """A running gateway of a site file with that `rules:` section: its runtime, rules engine and file."""
    site = {
        "site": {"id": "reload-rules", "name": "r", "timezone": "UTC"},
        "devices": [],
        "rules": rules_section,
    }
    config = site_file(tmp_path, site)
    rt = Runtime(load_site(config), with_web=False)
    await rt.start()
    try:
        rules = rt.components["rules"]
        assert isinstance(rules, RulesComponent)
        yield rt, rules, config
    finally:
        await rt.stop()


def _rewrite(config: Path, **rules: Any) -> None:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["rules"].update(rules)
    config.write_text(yaml.safe_dump(data), encoding="utf-8")


async def test_a_reload_applies_the_webhook_allow_list_and_holds_enabled_to_a_restart(
    tmp_path: Path, receiver: tuple[int, list[dict[str, Any]]]
) -> None:
    port, hits = receiver
    rules_section = {"max_actions_per_minute": 600, "webhook_allow": [f"127.0.0.1:{port}"]}
    async with _gateway(tmp_path, rules_section) as (rt, rules, config):
        events = Collector(rt)
        rules.put(_hook("hook", f"http://127.0.0.1:{port}/ok"), "test", "create")
        rt.hub.ingest([Reading(time.time(), "d.x", 1)])
        await until(lambda: hits, what="the post while the host is allowed")

        # the operator removes the host and switches the engine off: the first applies now
        _rewrite(config, webhook_allow=[], enabled=False)
        assert await reload(rt, str(config)) == ["rules.enabled"]
        assert rt.status()["restart_pending"] == ["rules.enabled"]
        posted = len(hits)
        rt.hub.ingest([Reading(time.time(), "d.x", 2)])
        failed = await until(
            lambda: events.kind("rule_action_failed"), timeout=20, what="the webhook refused after the reload"
        )
        assert failed[-1].payload["error"] == (
            "RuntimeError: webhook to 127.0.0.1 refused: rules.webhook_allow does not name it"
        )
        assert len(hits) == posted
        in_force = rt.site.sections["rules"]
        assert isinstance(in_force, RulesConfig) and in_force.enabled  # what runs, until the restart

        # a host added by a reload is one a rule may be saved with at once
        other = f"http://127.0.0.2:{port}/ok"
        with pytest.raises(RuleErrors):
            rules.put(_hook("other", other), "test", "create")
        _rewrite(config, webhook_allow=["127.0.0.2"], enabled=True)
        assert await reload(rt, str(config)) == []
        assert rt.status()["restart_pending"] == []
        rules.put(_hook("other", other), "test", "create")


def test_every_key_of_the_rules_section_is_either_applied_by_a_reload_or_held_to_a_restart() -> None:
    """A key added to `rules:` must be placed: a reload applies it (the plugin's `live_keys`,
    read by the component's `reload`) or names it as waiting for a restart."""
    from rules.config import RulesConfig
    from rules.plugin import PLUGIN

    live = set(PLUGIN.live_keys["rules"])
    assert "rules" not in PLUGIN.live_sections
    assert live < set(RulesConfig.model_fields)
    assert set(RulesConfig.model_fields) - live == {"enabled", "packs"}


async def test_a_webhook_without_its_own_retries_follows_the_site_setting(tmp_path: Path) -> None:
    """`rules.webhook_retries` is what a webhook without `retries:` gets (it was read nowhere: every
    such webhook was tried 4 times whatever the site said), and a reload changes it."""
    attempts: list[float] = []

    async def busy(request: web.Request) -> web.Response:
        attempts.append(time.monotonic())
        return web.Response(status=503)

    async with serving({"/busy": busy}, shutdown_timeout=0.1) as port:
        rules_section = {"webhook_retries": 0, "webhook_allow": [f"127.0.0.1:{port}"]}
        async with _gateway(tmp_path, rules_section) as (rt, rules, config):
            events = Collector(rt)
            hook = {
                "id": "hook",
                "when": "d.x",
                "notify": "always",
                "then": [{"webhook": f"http://127.0.0.1:{port}/busy"}],
            }
            rules.put(hook, "test", "create")
            rt.hub.ingest([Reading(time.time(), "d.x", 1)])
            await until(lambda: events.kind("rule_action_failed"), timeout=20, what="the webhook failing")
            assert len(attempts) == 1  # no retry

            _rewrite(config, webhook_retries=1)
            assert await reload(rt, str(config)) == []
            rt.hub.ingest([Reading(time.time(), "d.x", 2)])
            await until(
                lambda: len(events.kind("rule_action_failed")) == 2, timeout=20, what="the second failure"
            )
            assert len(attempts) == 3  # one more post, and one retry
