"""One bad MQTT message never ends command handling: a ThingsBoard RPC whose `data` is not an
object, a write of an integer beyond 64 bits (refused before it reaches the device, its answer
still encodable) and an error of the gateway's own are each answered or skipped, counted, and the
next request is answered as usual; the sink stops cleanly afterwards."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from tests.mqtt.broker import Subscriber, mqtt_sink, sink_of
from tests.support.site import running_site
from tests.support.waiting import until

COMMANDS = "edge/test-site/commands"
RESPONSES = "edge/test-site/responses"
RPC = "v1/gateway/rpc"


def sim_site(broker_port: int, **sink: Any) -> dict[str, Any]:
    """A simulated device `m1` with a writable int `cnt` and float `sp`, and `slowdev` answering
    writes in `slow` seconds; the mqtt sink with commands (ThingsBoard format: the RPC topic too)."""
    return {
        "devices": [
            {
                "id": "m1",
                "driver": "sim",
                "points": [
                    {
                        "name": "cnt",
                        "type": "int",
                        "signal": "constant",
                        "value": 1,
                        "interval": "1s",
                        "writable": True,
                    },
                    {
                        "name": "sp",
                        "type": "float",
                        "signal": "constant",
                        "value": 20,
                        "interval": "1s",
                        "writable": True,
                    },
                ],
            },
            {
                "id": "slowdev",
                "driver": "sim",
                "points": [
                    {
                        "name": "sp",
                        "type": "float",
                        "signal": "constant",
                        "value": 1,
                        "interval": "1s",
                        "writable": True,
                    },
                ],
                "faults": [
                    {"type": "slow", "every": "1s", "duration": "100000s", "delay": "3s", "first_after": 0}
                ],
            },
        ],
        "upstream": [
            mqtt_sink(
                broker_port, **{"commands": True, "command_ttl": "30s", "format": "thingsboard", **sink}
            )
        ],
    }


def answers(sub: Subscriber) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in (orjson.loads(p) for p in sub.on(RESPONSES))}


@contextlib.asynccontextmanager
async def commanded_site(
    tmp_path: Path, broker_port: int, **site: Any
) -> AsyncIterator[tuple[Subscriber, Any, Any]]:
    """`sim_site` running (web UI off unless `web=True`), a subscriber on the answers, and the sink
    once it is connected and subscribed: (subscriber, runtime, sink)."""
    web = bool(site.pop("web", False))
    async with (
        Subscriber(broker_port, RESPONSES) as sub,
        running_site(tmp_path, sim_site(broker_port, **site), web=web) as rt,
    ):
        s = sink_of(rt)
        await until(lambda: s.status()["connected"], 20, what="the sink connected and subscribed")
        yield sub, rt, s


async def test_bad_messages_are_answered_and_handling_goes_on(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    b = broker()
    async with commanded_site(tmp_path, b.port) as (sub, rt, s):
        await until(lambda: "m1.cnt" in rt.hub.latest, 20, what="m1 sampled")
        real_run = s.commands.run
        broken = {"n": 0}

        async def run_once_broken(rid: str, *args: Any) -> dict[str, Any]:
            if rid == "boom":
                broken["n"] += 1
                raise RuntimeError("a bug")
            return await real_run(rid, *args)

        s.commands.run = run_once_broken
        now = time.time()
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as operator:
            await operator.publish(RPC, b'{"id": 1, "data": 5}', qos=1)
            await operator.publish(RPC, b'{"device": "m1", "data": 5}', qos=1)
            for rid, value in (("big", 1e300), ("small", -1e19), ("boom", 3)):
                req = {"id": rid, "point": "m1.cnt", "value": value, "ts": now}
                await operator.publish(COMMANDS, orjson.dumps(req), qos=1)
            after = {"id": "after", "point": "m1.sp", "value": 44, "ts": now}
            await operator.publish(COMMANDS, orjson.dumps(after), qos=1)
            await until(lambda: "after" in answers(sub), 20, what="the request after the bad ones answered")
        got = answers(sub)
        assert got["after"]["status"] == "ok"
        for rid in ("big", "small"):
            assert got[rid]["status"] == "rejected", got[rid]
            assert "out of range" in got[rid]["reason"] and "64 bits" in got[rid]["reason"]
        assert got["boom"]["status"] == "failed" and "a bug" in got["boom"]["reason"]
        assert broken["n"] == 1
        # the out-of-range writes never reached the device
        assert rt.hub.latest["m1.cnt"].value == 1
        # the two RPCs whose data is not an object: refused (their answers may come after "after")
        await until(lambda: s.status()["commands_refused"].get("malformed") == 2, 20, what="the RPCs refused")
        st = s.status()
        assert st["commands_errors"] == 1
        assert st["commands_refused"] == {"malformed": 2}
        assert st["connected"]


async def test_stop_runs_to_the_end_whatever_the_command_task_ended_with(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    """A stop never raises out of the sink: the push loop's stop and the clean disconnect run
    even when the command task had ended with an error."""
    import asyncio

    b = broker()
    async with running_site(tmp_path, sim_site(b.port), web=False) as rt:
        s = sink_of(rt)
        await until(lambda: s.status()["connected"], 20, what="the sink connected and subscribed")
        real = s._command_task
        real.cancel()
        await asyncio.gather(real, return_exceptions=True)

        async def broken() -> None:
            raise RuntimeError("a bug")

        s._command_task = asyncio.create_task(broken())
        await asyncio.gather(s._command_task, return_exceptions=True)
        await s.stop()
        assert s.client is None and not s.status()["connected"]
