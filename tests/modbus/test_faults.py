"""Misbehaving devices: garbage and short answers, stalls that must not stall other devices,
writes that must not wait behind a slow poll cycle."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable

import pytest

from edge.model import HealthState, Quality
from tests.modbus.harness import Collected, running_driver, slow_device
from tests.modbus.servers import GarbageServer, tcp_server
from tests.support.waiting import until as wait_for


def conn(port: int) -> dict[str, object]:
    return {"transport": "tcp", "host": "127.0.0.1", "port": port}


def one_register_answer(byte_count: int) -> Callable[[bytes], bytes]:
    """A well-framed FC3 answer carrying 1 register whatever was asked, its byte count
    `byte_count` (2 is honest; more claims registers the frame does not hold)."""

    def answer(request: bytes) -> bytes:
        tid, unit, fc = request[:2], request[6], request[7]
        pdu = bytes([fc, byte_count, 0x12, 0x34])
        return tid + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu

    return answer


def garbage(request: bytes) -> bytes:
    return b"\xde\xad\xbe\xef" * 3


@contextlib.asynccontextmanager
async def polling_a_bad_device(
    reply: Callable[[bytes], bytes], point_type: str, timeout: float, retries: int
) -> AsyncIterator[tuple[GarbageServer, Collected]]:
    """A driver polling one point `v` of a device that answers every request with `reply(request)`."""
    srv = await GarbageServer(reply).start()
    try:
        points = [{"name": "v", "address": 0, "type": point_type}]
        doc = {
            "connection": conn(srv.port),
            "poll": 0.1,
            "timeout": timeout,
            "retries": retries,
            "points": points,
        }
        async with running_driver(doc) as got:
            yield srv, got
    finally:
        await srv.stop()


async def test_short_answer_is_an_error_not_a_value() -> None:
    async with polling_a_bad_device(one_register_answer(2), "float32", timeout=0.3, retries=0) as (_, got):
        await wait_for(lambda: got.driver.health.state == HealthState.OFFLINE, what="offline")
        assert "short answer: 1 of 2" in got.driver.health.reason
        await wait_for(lambda: got.latest("v") is not None, what="a reading")
        latest = got.latest("v")
        assert latest is not None and latest.quality == Quality.STALE and latest.value is None


async def test_byte_count_past_the_frame_is_no_answer() -> None:
    async with polling_a_bad_device(one_register_answer(200), "uint16", timeout=0.3, retries=0) as (_, got):
        await wait_for(lambda: got.driver.health.state == HealthState.OFFLINE, what="offline")
        assert "no valid answer from unit 1" in got.driver.health.reason
        assert not [r for r in got.records if getattr(r, "quality", None) == Quality.GOOD]


def test_register_answers_decode_as_pymodbus_does() -> None:
    # the link registers its own FC3/FC4 answer decoding (one struct call per answer) with pymodbus
    from pymodbus.exceptions import ModbusIOException
    from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

    from drivers.modbus.transport import _fast_register_answers

    rng = random.Random(3)
    for ours, theirs in zip(
        _fast_register_answers(), (ReadHoldingRegistersResponse, ReadInputRegistersResponse), strict=True
    ):
        assert ours.function_code == theirs.function_code and issubclass(ours, theirs)
        assert ours.rtu_byte_count_pos == theirs.rtu_byte_count_pos
        for _ in range(300):
            n = rng.randrange(0, 126)
            data = bytes([2 * n]) + bytes(rng.randrange(256) for _ in range(2 * n + rng.randrange(3)))
            a, b = ours(), theirs()
            a.decode(data)
            b.decode(data)
            assert a.registers == b.registers
        for bad in (bytes([4, 1, 2]), bytes([9]), bytes([200, 0x12, 0x34])):
            with pytest.raises(ModbusIOException):
                ours().decode(bad)
            with pytest.raises(ModbusIOException):
                theirs().decode(bad)


async def test_garbage_answer_times_out_and_marks_stale() -> None:
    async with polling_a_bad_device(garbage, "uint16", timeout=0.2, retries=1) as (srv, got):
        await wait_for(lambda: got.driver.health.state == HealthState.OFFLINE, what="offline")
        assert "no valid answer from unit 1" in got.driver.health.reason
        await wait_for(lambda: got.events("device_state"), what="a device_state event")
        assert got.events("device_state")[-1].payload["state"] == "offline"
        assert len(srv.requests) >= 2  # the retry went out


async def test_a_stalled_device_does_not_stall_the_others() -> None:
    async with tcp_server({1: {"holding": {0: 11}}}) as slow, tcp_server({1: {"holding": {0: 22}}}) as fast:
        slow.faults.stall.set()  # every request to `slow` hangs
        points = [{"name": "v", "address": 0, "type": "uint16"}]
        slow_doc = {
            "id": "slow",
            "connection": conn(slow.port),
            "poll": 0.1,
            "timeout": 1.0,
            "points": points,
        }
        fast_doc = {"id": "fast", "connection": conn(fast.port), "poll": 0.05, "points": points}
        async with running_driver(slow_doc) as s, running_driver(fast_doc) as f:
            await f.polled(5)
            # five fast cycles completed while the slow device had not finished one
            assert s.driver.cycles == 0 and f.values() == {"v": 22}
            await wait_for(lambda: s.driver.health.state == HealthState.OFFLINE, what="slow device offline")
            slow.faults.stall.clear()
            slow.faults.unstall.set()
            await wait_for(lambda: s.driver.health.state == HealthState.ONLINE, timeout=10, what="recovery")
            await wait_for(lambda: s.values().get("v") == 11, what="slow device value")


async def test_write_jumps_the_queue_of_a_slow_poll_cycle() -> None:
    # 20 separate requests per cycle (holes larger than max_gap), each held 50 ms by the device
    regs = {a * 20: a for a in range(20)}
    points = [{"name": f"p{a}", "address": a * 20, "type": "uint16"} for a in range(20)]
    points.append({"name": "cmd", "table": "coil", "address": 0, "writable": True})
    async with tcp_server({1: {"holding": regs, "coil": {0: False}}}) as srv:
        doc = {"connection": conn(srv.port), "poll": 0.05, "max_gap": 0, "timeout": 2.0, "points": points}
        async with running_driver(doc) as got:
            await got.polled(1)

            async with slow_device(srv):
                await wait_for(lambda: len(srv.faults.log) > 30, what="the slow cycle under way")
                before = len(srv.faults.log)
                result = await got.driver.write("cmd", True)
                assert result.ok, result.reason
                # at most the request in flight ran before the write (not the rest of the cycle)
                idx = next(i for i, e in enumerate(srv.faults.log) if e[1] == 5)
                assert idx - before <= 1, srv.faults.log[before : idx + 1]
