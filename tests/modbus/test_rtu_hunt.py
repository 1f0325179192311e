"""An RTU answer that arrives in pieces is found behind noise, at little cost, and never a frame
that happens to sit inside its register data.

The scripted device of test_rtu_answers sends each answer in chunks and waits until the link has
taken each one before the next, so every chunk reaches the link on its own."""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.framer import FramerRTU

from drivers.modbus.transport import DeviceException, Link
from tests.modbus.harness import running_driver
from tests.modbus.test_rtu_answers import RtuDevice, frame, rtu_device, slow_meter

#: long enough for 255 one-byte chunks, each handed over between two threads
TIMEOUT = 10.0
REGISTERS = 125  # the largest read: a 255-byte answer


class Receipts:
    """Counts the bytes the link receives, so the device can wait for each chunk to be taken."""

    def __init__(self) -> None:
        self.received = 0
        self.chunks = 0
        self._cond = threading.Condition()

    def watch(self, link: Link) -> None:
        ctx = link._client.ctx
        received = ctx.data_received

        def data_received(data: bytes) -> None:
            with self._cond:
                self.received += len(data)
                self.chunks += 1
                self._cond.notify_all()
            received(data)

        ctx.data_received = data_received

    def taken(self, count: int) -> bool:
        """Wait (5 s at most) until the link has received `count` bytes in all."""
        with self._cond:
            return self._cond.wait_for(lambda: self.received >= count, timeout=5)

    def sender(self, dev: RtuDevice, size: int, noise: bytes = b"") -> Callable[[bytes], None]:
        """Send `noise`, then the answer `size` bytes at a time, each once the link has the last."""

        def send(out: bytes) -> None:
            with self._cond:
                base = self.received
            pieces = ([noise] if noise else []) + [out[i : i + size] for i in range(0, len(out), size)]
            for piece in pieces:
                os.write(dev.fd, piece)
                base += len(piece)
                if not self.taken(base):
                    return  # the link stopped reading: the test fails on its own timeout

        return send


@contextlib.contextmanager
def counted_decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How often pymodbus's RTU decode runs (one count per call)."""
    calls = [0]
    decode = FramerRTU.decode

    def counting(self: Any, data: bytes) -> tuple[int, int, int, bytes]:
        calls[0] += 1
        return decode(self, data)

    monkeypatch.setattr(FramerRTU, "decode", counting)
    yield calls


def registers_holding(data: bytes, at: int) -> dict[int, int]:
    """Register values that put `data` (an even number of bytes) at register `at`."""
    return {at + i: v for i, v in enumerate(struct.unpack(f">{len(data) // 2}H", data))}


async def test_an_answer_in_one_byte_chunks_is_decoded_once_per_chunk_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with counted_decodes(monkeypatch) as decodes:
        async with rtu_device(tmp_path) as (port, dev), running_driver(slow_meter(port)) as got:
            await got.polled(1)
            link = got.driver.link
            assert link is not None
            receipts = Receipts()
            receipts.watch(link)
            dev.send = receipts.sender(dev, 1)
            before = decodes[0]
            resp = await link.call(1, "read_holding_registers", 0, count=REGISTERS, timeout=TIMEOUT)
            assert resp.registers == [1000 + i for i in range(REGISTERS)]
            assert receipts.chunks == 2 * REGISTERS + 5
            # the whole buffer decoded again at every later byte was ~32,000 decodes for one answer
            assert decodes[0] - before <= receipts.chunks
            assert link.noise == 0


async def test_a_frame_inside_the_register_data_is_not_taken_for_the_answer(tmp_path: Path) -> None:
    # registers 10..13 hold the bytes of a whole frame with a good CRC (unit 2 answering a write)
    inner = frame(bytes([2, 6, 0, 1, 0, 5]))
    async with rtu_device(tmp_path) as (port, dev), running_driver(slow_meter(port)) as got:
        await got.polled(1)
        link = got.driver.link
        assert link is not None
        dev.store = registers_holding(inner, 10)
        receipts = Receipts()
        receipts.watch(link)
        dev.send = receipts.sender(dev, 16)
        resp = await link.call(1, "read_holding_registers", 0, count=REGISTERS, timeout=TIMEOUT)
        assert resp.registers[10:14] == list(registers_holding(inner, 10).values())
        assert resp.registers[:10] == [1000 + i for i in range(10)]
        assert link.noise == 0 and link.wrong_answers == 0


async def test_noise_and_a_full_answer_beyond_pymodbus_buffer_are_not_lost(tmp_path: Path) -> None:
    # 20 bytes of noise then a 255-byte answer: 275 bytes, more than pymodbus keeps (264)
    noise = bytes(20)
    async with rtu_device(tmp_path) as (port, dev), running_driver(slow_meter(port)) as got:
        await got.polled(1)
        link = got.driver.link
        assert link is not None
        receipts = Receipts()
        receipts.watch(link)
        dev.send = receipts.sender(dev, 16, noise=noise)
        resp = await link.call(1, "read_holding_registers", 0, count=REGISTERS, timeout=TIMEOUT)
        assert resp.registers == [1000 + i for i in range(REGISTERS)]
        assert link.noise == len(noise)
        assert got.driver.counters["noise_bytes_skipped"] == len(noise)


@pytest.mark.parametrize("size", [1, 16])
async def test_an_exception_answer_behind_noise_is_found(tmp_path: Path, size: int) -> None:
    async with rtu_device(tmp_path) as (port, dev), running_driver(slow_meter(port)) as got:
        await got.polled(1)
        link = got.driver.link
        assert link is not None
        dev.answer = lambda unit, fc, addr, count, out: frame(bytes([unit, fc | 0x80, 2]))
        receipts = Receipts()
        receipts.watch(link)
        dev.send = receipts.sender(dev, size, noise=b"\x01\x03\xff\x00")  # the head of a 255-byte answer
        with pytest.raises(DeviceException, match="illegal data address"):
            await link.call(1, "read_holding_registers", 0, count=2, timeout=TIMEOUT)
        assert link.noise == 4
