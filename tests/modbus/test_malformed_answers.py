"""Answers that arrive whole but do not decode (a byte count the frame does not hold, an exception
response without its code, an unknown function code): each is a counted wrong answer that fails
its request at once, logged once per device, never an error escaping into the event loop (asyncio
logged a traceback per answer and the request waited out its whole timeout)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from edge.model import HealthState
from tests.modbus.harness import Collected, running_driver
from tests.modbus.servers import GarbageServer
from tests.support.waiting import until as wait_for

#: answers to a read of 2 holding registers, and what the reason names
MALFORMED = {
    "04 04 00": "byte_count 4",  # 4 data bytes announced, 1 carried
    "03 02": "byte_count 2",  # a byte count without its data
    "83": "without its exception code",
    "41": "unknown function code 0x41",
    "2b 0e 01": "function code 43",
}
#: RTU has no length field: a cut-short answer that starts like the answer asked for (the
#: exception without its code) cannot be told from one still arriving, so it times out
RTU_UNDECIDABLE = {"83"}
GOOD = bytes.fromhex("03 04 00 00 04 d2")  # registers 0-1 hold 1234 as uint32


def tcp_answer(pdu: Callable[[], bytes]) -> Callable[[bytes], bytes]:
    def answer(request: bytes) -> bytes:
        body = bytes([request[6]]) + pdu()
        return request[:2] + b"\x00\x00" + len(body).to_bytes(2, "big") + body

    return answer


@contextlib.asynccontextmanager
async def device_answering(transport: str, pdu: Callable[[], bytes]) -> AsyncIterator[Collected]:
    if transport == "tcp":
        srv = await GarbageServer(tcp_answer(pdu)).start()
    else:  # each request answered with `pdu()` framed for its unit
        srv = await GarbageServer(lambda request: bytes([request[0]]) + pdu(), rtu=True).start()
    try:
        doc = {
            "connection": {"transport": transport, "host": "127.0.0.1", "port": srv.port},
            "poll": 0.05,
            # a request that waited for its answer would wait this long: the test would time out
            "timeout": 60,
            "retries": 1,
            "points": [{"name": "v", "address": 0, "type": "uint32"}],
        }
        async with running_driver(doc) as got:
            yield got
    finally:
        await srv.stop()


CASES = [
    (transport, answer)
    for answer in MALFORMED
    for transport in ("tcp", "rtu_over_tcp")
    if transport == "tcp" or answer not in RTU_UNDECIDABLE
]


@pytest.mark.parametrize(("transport", "answer"), CASES)
async def test_a_malformed_answer_is_a_counted_wrong_answer_logged_once(
    transport: str, answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    current = [bytes.fromhex(answer)]
    async with device_answering(transport, lambda: current[0]) as got:
        await wait_for(lambda: got.driver.health.state == HealthState.OFFLINE, what="offline")
        reason = got.driver.health.reason
        assert "no valid answer from unit 1" in reason and "malformed answer" in reason, reason
        assert MALFORMED[answer] in reason, reason
        await wait_for(
            lambda: got.driver.counters["wrong_answers"] >= 6, what="three cycles of wrong answers"
        )
        assert got.driver.health.errors >= 6

        current[0] = GOOD
        await wait_for(lambda: got.values().get("v") == 1234, what="a good answer")
        assert got.driver.health.state == HealthState.ONLINE
    fatal = [r for r in caplog.records if r.name == "asyncio" or r.exc_info]
    assert not fatal, fatal[0].getMessage()
    ours = [r.getMessage() for r in caplog.records if r.name == "drivers.modbus"]
    warned = [
        r.getMessage() for r in caplog.records if r.name == "drivers.modbus" and r.levelno >= logging.WARNING
    ]
    assert len(warned) == 1, ours
    again = [m for m in ours if "answers again, after" in m]
    assert len(again) == 1, ours
