"""The commands a sink takes are counted in /metrics, as its deliveries are: requests received,
refused by class, run by outcome, answers dropped or waiting. Read from a live gateway and checked
with promtool."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import orjson

from edge.api.tokens import create_token
from tests.mqtt.test_command_robust import COMMANDS, answers, commanded_site
from tests.support.tools import require_tool
from tests.support.waiting import until
from tests.sync.test_metrics_cli import samples, scrape


async def test_commands_are_counted_in_metrics(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    promtool = require_tool("promtool", "Debian package prometheus")
    b = broker()
    async with commanded_site(tmp_path, b.port, web=True) as (sub, rt, s):
        await until(lambda: "m1.sp" in rt.hub.latest, 20, what="m1 sampled")
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            await operator.publish(COMMANDS, b"not json", qos=1)
            await operator.publish(
                COMMANDS,
                orjson.dumps({"id": "ok-1", "point": "m1.sp", "value": 44, "ts": time.time()}),
                qos=1,
            )
            await operator.publish(
                COMMANDS,
                orjson.dumps({"id": "nowhere", "point": "m1.nope", "value": 9, "ts": time.time()}),
                qos=1,
            )
        await until(lambda: {"ok-1", "nowhere"} <= set(answers(sub)), 20, what="both requests answered")
        rejected = answers(sub)["nowhere"]["status"]
        text = await scrape(rt.web_port, create_token(rt.state, "prom", ["read"]))
        sink = s.cfg.id
    got = samples(text)
    assert got[("edge_sink_commands_received_total", (("sink", sink),))] == 3
    assert got[("edge_sink_commands_refused_total", (("reason", "malformed"), ("sink", sink)))] == 1
    assert got[("edge_sink_commands_done_total", (("outcome", "ok"), ("sink", sink)))] == 1
    assert got[("edge_sink_commands_done_total", (("outcome", rejected), ("sink", sink)))] == 1
    assert got[("edge_sink_commands_retained_total", (("sink", sink),))] == 0
    assert got[("edge_sink_command_answers_dropped_total", (("sink", sink),))] == 0
    check = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
        check.stdout + check.stderr
    )
