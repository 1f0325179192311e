"""A write right after a device comes back goes out at once: it connects during the reconnect
backoff, as "Read now" does, instead of failing with "next attempt in 34.4s" for up to
`reconnect_max` while the device answers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from edge.model import CommandStatus, HealthState
from tests.modbus.harness import running_driver
from tests.modbus.servers import TcpServer
from tests.support.waiting import until as wait_for

POINTS: list[dict[str, Any]] = [
    {"name": "open_cmd", "table": "coil", "address": 0, "writable": True},
    {"name": "setpoint", "address": 10, "type": "uint16", "writable": True, "verify": True},
    {"name": "relay", "address": 20, "type": "bit", "bit": 3, "writable": True},
]
VALUES: dict[str, Any] = {"open_cmd": True, "setpoint": 42, "relay": True}
TABLES: dict[str, dict[int, Any]] = {"coil": {0: False}, "holding": {10: 0, 20: 0b1}}


@pytest.mark.parametrize("point", list(VALUES))
async def test_a_write_after_an_outage_connects_at_once(point: str) -> None:
    srv = await TcpServer({1: TABLES}).start()
    port = srv.port
    try:
        doc = {
            "connection": {"transport": "tcp", "host": "127.0.0.1", "port": port},
            "poll": 0.05,
            "timeout": 0.5,
            "retries": 0,
            "reconnect_max": 120,
            "points": POINTS,
        }
        async with running_driver(doc) as got:
            await got.polled(1)
            await srv.stop()
            link = got.driver.link
            assert link is not None
            await wait_for(lambda: got.driver.health.state == HealthState.OFFLINE, what="offline")
            # the link backs off: its next attempt to connect is well ahead
            await wait_for(lambda: link._next_attempt - time.monotonic() > 2, what="a backoff of 2 s")

            srv = await TcpServer({1: TABLES}, port=port).start()
            result = await got.driver.write(point, VALUES[point])
            assert result.status == CommandStatus.OK, result.reason
            if point == "relay":
                assert await srv.get(1, "holding", 20) == [0b1001]  # bit 0 kept, bit 3 set
            elif point == "setpoint":
                assert await srv.get(1, "holding", 10) == [42]
            else:
                assert await srv.get(1, "coil", 0) == [True]
    finally:
        await srv.stop()
