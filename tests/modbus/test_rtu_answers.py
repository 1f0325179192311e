"""RTU answers that are late, wrong or noisy: never a value for the wrong request.

A scripted device on one end of a socat pty pair stands in for the meter (a pymodbus server always
answers at once and always right)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import struct
import subprocess
import threading
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edge.driver import DeviceReadError
from edge.model import Quality
from tests.modbus.harness import running_driver
from tests.modbus.servers import crc, stop_process
from tests.support.tools import require_tool
from tests.support.waiting import until as wait_for

#: how one request is answered: (unit, fc, address, count, the answer the device would give) ->
#: what it sends instead (the test's misbehaviour)
Answer = Callable[[int, int, int, int, bytes], bytes]


class RtuDevice:
    """Unit 1: FC3/FC4 register i holds 1000 + i unless written with FC6 (kept in `store`).
    Requests are served one at a time, in order. `delays` holds the delay of each next answer
    (popped per request; none left: at once); `answer`, when set, rewrites each next answer;
    `noise` is sent before the next answer, `noise_gap` seconds ahead of it; `send`, when set,
    sends each answer instead of one write (in chunks, say)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        self.store: dict[int, int] = {}
        self.delays: list[float] = []
        self.answer: Answer | None = None
        self.noise = b""
        self.noise_gap = 0.0
        self.send: Callable[[bytes], None] | None = None
        self.requests: list[tuple[int, int, int, int]] = []  # (unit, fc, address, count)
        self.answered = 0
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _wait(self, seconds: float) -> bool:
        """Sleep `seconds` unless stopped (then False)."""
        ready, _, _ = select.select([self._stop_r], [], [], seconds)
        return not ready

    def _run(self) -> None:
        buf = b""
        while True:
            ready, _, _ = select.select([self.fd, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            buf += os.read(self.fd, 256)
            while len(buf) >= 8:
                frame = buf[:8]
                if crc(frame[:6]) != frame[6:8]:
                    buf = buf[1:]
                    continue
                buf = buf[8:]
                unit, fc, addr, count = struct.unpack(">BBHH", frame[:6])
                self.requests.append((unit, fc, addr, count))
                if unit != 1 or fc not in (3, 4, 6):
                    continue
                if self.delays and not self._wait(self.delays.pop(0)):
                    return
                if fc == 6:
                    self.store[addr] = count
                    body = frame[:6]
                else:
                    regs = [self.store.get(addr + i, (1000 + addr + i) & 0xFFFF) for i in range(count)]
                    body = bytes([unit, fc, 2 * count]) + struct.pack(f">{count}H", *regs)
                out = body + crc(body)
                if self.answer is not None:
                    out = self.answer(unit, fc, addr, count, out)
                if self.noise:
                    os.write(self.fd, self.noise)
                    if self.noise_gap and not self._wait(self.noise_gap):
                        return
                self.answered += 1  # counted before it goes out: whoever reads it sees it counted
                if self.send is not None:
                    self.send(out)
                else:
                    os.write(self.fd, out)

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self.fd, self._stop_r, self._stop_w):
            os.close(fd)


def frame(body: bytes) -> bytes:
    """An RTU frame: `body` (unit, function code, data) and its CRC."""
    return body + crc(body)


@contextlib.asynccontextmanager
async def rtu_device(tmp_path: Path) -> AsyncIterator[tuple[str, RtuDevice]]:
    """(the port the driver opens, the device on the other end of the pty pair)."""
    socat = require_tool("socat", "apt-get install -y socat")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; socat runs beside the test
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for(lambda: a.exists() and b.exists(), what="socat ptys")
        dev = RtuDevice(b)
        try:
            yield str(a), dev
        finally:
            dev.stop()
    finally:
        stop_process(proc)  # type: ignore[arg-type]


POINTS = [
    {"name": "r0", "address": 0, "type": "uint16"},
    {"name": "r10", "address": 10, "type": "uint16"},
    {"name": "alarm", "address": 300, "type": "bit", "bit": 0, "writable": True},
]


TIMEOUT = 0.3
#: an answer this late comes after the timeout (the device's delay starts once it has the request)
#: and well within the quiet period the line waits for after the failure, one timeout long
LATE = TIMEOUT + 0.05


def slow_meter(port: str, **more: object) -> dict[str, object]:
    # one poll at start, then only what a test asks for; each point its own request
    conn = {"transport": "rtu", "port": port}
    return {
        "connection": conn,
        "poll": "1h",
        "timeout": TIMEOUT,
        "retries": 0,
        "max_gap": 0,
        "points": POINTS,
        **more,
    }


async def test_a_late_answer_is_not_taken_for_the_next_request(tmp_path: Path) -> None:
    async with rtu_device(tmp_path) as (port, dev), running_driver(slow_meter(port)) as got:
        await got.polled(1)
        assert got.values() == {"r0": 1000, "r10": 1010, "alarm": False}
        dev.delays = [LATE]  # r0's answer comes after the timeout, while r10 is asked
        with pytest.raises(DeviceReadError, match="did not answer"):
            await got.driver.read("r0")
        r10 = await got.driver.read("r10")
        assert r10.value == 1010 and r10.quality == Quality.GOOD
        assert dev.answered == 5  # the late answer did go out, and was thrown away
        link = got.driver.link
        assert link is not None and link.discarded == 7  # unit, fc, byte count, 2 bytes, CRC
        assert got.driver.counters["late_bytes_discarded"] == 7


async def test_a_late_answer_between_requests_is_counted(tmp_path: Path) -> None:
    async with rtu_device(tmp_path) as (port, dev), running_driver(slow_meter(port)) as got:
        await got.polled(1)
        link = got.driver.link
        assert link is not None
        dev.delays = [LATE]
        with pytest.raises(DeviceReadError, match="did not answer"):
            await got.driver.read("r0")
        # nothing asked meanwhile: the late answer arrives on a quiet link, and is still counted
        await wait_for(lambda: link.discarded == 7, what="the late answer counted")
        assert (await got.driver.read("r10")).value == 1010
        assert got.driver.counters["late_bytes_discarded"] == 7


async def test_a_late_answer_does_not_reach_a_bit_write(tmp_path: Path) -> None:
    async with rtu_device(tmp_path) as (port, dev), running_driver(slow_meter(port)) as got:
        dev.store[300] = 0x0100
        await got.polled(1)
        dev.delays = [LATE]
        with pytest.raises(DeviceReadError):
            await got.driver.read("r10")
        result = await got.driver.write("alarm", True)
        assert result.ok, result.reason
        assert dev.store == {300: 0x0101}  # the register's own bits, not r10's value with bit 0 set


async def test_an_answer_to_a_cancelled_request_is_not_taken_for_the_next(tmp_path: Path) -> None:
    # the caller gives up before the timeout (a hub's timeout around a write, a commissioning
    # read's): the device still answers, and that answer is thrown away like a late one
    async with rtu_device(tmp_path) as (port, dev), running_driver(slow_meter(port, timeout=1.0)) as got:
        await got.polled(1)
        asked = len(dev.requests)
        dev.delays = [0.2]  # r0's answer comes after the caller gave up, while r10 is asked
        r0 = asyncio.create_task(got.driver.read("r0"))
        await wait_for(lambda: len(dev.requests) > asked, what="r0 asked")
        r0.cancel()
        with pytest.raises(asyncio.CancelledError):
            await r0
        r10 = await got.driver.read("r10")
        assert r10.value == 1010 and r10.quality == Quality.GOOD
        link = got.driver.link
        assert link is not None and link.discarded == 7
        assert got.driver.counters["late_bytes_discarded"] == 7


def longer(unit: int, fc: int, addr: int, count: int, out: bytes) -> bytes:
    regs = out[3:-2] + b"\x00\x07"
    return frame(bytes([unit, fc, len(regs)]) + regs)


def other_function(unit: int, fc: int, addr: int, count: int, out: bytes) -> bytes:
    return frame(bytes([unit, 7 - fc]) + out[2:-2])  # an input register answer to a holding read


@pytest.mark.parametrize(
    ("answer", "why"), [(longer, "long answer: 2 of 1"), (other_function, "function code 4")]
)
async def test_an_answer_that_does_not_match_the_request_is_an_error(
    tmp_path: Path, answer: Answer, why: str
) -> None:
    async with rtu_device(tmp_path) as (port, dev), running_driver(slow_meter(port, retries=1)) as got:
        await got.polled(1)
        dev.answer = answer
        with pytest.raises(DeviceReadError, match=why):
            await got.driver.read("r0")
        link = got.driver.link
        assert link is not None and link.wrong_answers == 2  # the request and its retry
        assert got.driver.counters["wrong_answers"] == 2
        dev.answer = None
        assert (await got.driver.read("r0")).value == 1000
        await got.driver.poll_group(3600.0)
        assert got.driver.health.state == "online"
        assert got.driver.health.errors == 2  # counted against the device, though the retry got it right


@pytest.mark.parametrize(
    ("noise", "gap"),
    [
        (b"\x00", 0.05),  # a byte of line noise, then the answer after a pause
        (b"\x00", 0.0),  # right before the answer
        (b"\x01\x03\xff", 0.0),  # noise that looks like the head of a 255-byte answer
    ],
)
async def test_noise_before_an_answer_does_not_lose_it(tmp_path: Path, noise: bytes, gap: float) -> None:
    async with rtu_device(tmp_path) as (port, dev), running_driver(slow_meter(port)) as got:
        await got.polled(1)
        dev.noise, dev.noise_gap = noise, gap  # before every answer from now on
        for _ in range(3):
            assert (await got.driver.read("r10")).value == 1010
        await got.driver.poll_group(3600.0)
        assert got.driver.health.state == "online" and got.driver.health.errors == 0
        link = got.driver.link
        assert link is not None and link.noise == 6 * len(noise)  # counted: 3 reads, 3 requests of a poll
        assert got.driver.counters == {
            "wrong_answers": 0,
            "late_bytes_discarded": 0,
            "noise_bytes_skipped": 6 * len(noise),
        }
