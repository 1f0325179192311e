"""Connections to Modbus devices: TCP, RTU over a serial line, RTU over TCP (serial servers).

A `Link` owns one pymodbus client. Every request goes through `Link.call`, which:
  - serialises requests on the link (an RS-485 bus carries one frame at a time, and several
    devices on one bus share one Link), with an optional pause between frames;
  - lets writes jump the queue, so a command waits for at most the one request in progress;
  - queues a retry behind the requests that waited meanwhile (a silent unit does not hold a
    shared bus through all its retries);
  - connects lazily and, after a failure, reconnects with capped exponential backoff and jitter —
    failing fast in between, so a dead device costs nothing and comes back by itself even after
    hours (the cap keeps the retry interval bounded).
Links are shared by `bus_key` through `acquire`/`release` (reference counted).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from drivers.modbus.config import Connection

log = logging.getLogger("drivers.modbus")

WRITE = 0  # priority of writes (lower runs first)
READ = 1

#: the function code each request method sends; an answer must carry the same one
FUNCTION_CODES = {
    "read_coils": 1,
    "read_discrete_inputs": 2,
    "read_holding_registers": 3,
    "read_input_registers": 4,
    "write_coil": 5,
    "write_register": 6,
    "write_coils": 15,
    "write_registers": 16,
}
BIT_READS = ("read_coils", "read_discrete_inputs")
REGISTER_READS = ("read_holding_registers", "read_input_registers")


_ModbusException: type[Exception] | None = None


def _modbus_exception() -> type[Exception]:
    """pymodbus's exception base, imported on first use (a site without Modbus never loads pymodbus)."""
    global _ModbusException
    if _ModbusException is None:
        from pymodbus.exceptions import ModbusException

        _ModbusException = ModbusException
    return _ModbusException


_register_answers: tuple[type[Any], ...] = ()


def _fast_register_answers() -> tuple[type[Any], ...]:
    """FC3/FC4 answers decoded in one `struct` call instead of one per register (pymodbus's own
    loop was the largest Python cost of reading a full 125-register answer). Same registers, same
    error for a byte count the frame does not hold; registered on each client we make."""
    global _register_answers
    if not _register_answers:
        import struct

        from pymodbus.exceptions import ModbusIOException
        from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

        def decode(self: Any, data: bytes) -> None:
            if (data_len := int(data[0])) >= len(data):
                raise ModbusIOException(
                    f"byte_count {data_len} > length of packet {len(data)}", function_code=self.function_code
                )
            self.registers = list(struct.unpack_from(f">{data_len // 2}H", data, 1))

        _register_answers = tuple(
            type(base.__name__, (base,), {"decode": decode, "__module__": __name__})
            for base in (ReadHoldingRegistersResponse, ReadInputRegistersResponse)
        )
    return _register_answers


class MalformedAnswer(Exception):
    """An answer whose frame arrived whole but whose PDU does not decode (a byte count the frame
    does not hold, an exception response without its code, an unknown function code)."""


class LinkError(Exception):
    """The request did not get an answer: not connected, timed out, or the answer was garbage."""

    def __init__(self, message: str, *, no_answer: bool = False):
        super().__init__(message)
        self.no_answer = no_answer  # the request went out but nothing usable came back


class DeviceException(Exception):
    """The device answered with a Modbus exception response (illegal address, busy, ...)."""

    NAMES = {
        1: "illegal function",
        2: "illegal data address",
        3: "illegal data value",
        4: "device failure",
        5: "acknowledge",
        6: "device busy",
        10: "gateway path unavailable",
        11: "gateway target failed to respond",
    }

    def __init__(self, code: int):
        self.code = code
        super().__init__(f"exception {code}: {self.NAMES.get(code, 'unknown')}")


class PriorityLock:
    """A mutex whose waiters are served by priority, then arrival order."""

    def __init__(self) -> None:
        self._locked = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def try_acquire(self) -> bool:
        """Take the lock if it is free, without a trip through the event loop."""
        if self._locked or self._waiters:
            return False
        self._locked = True
        return True

    async def acquire(self, priority: int) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # we were handed the lock as we got cancelled: pass it on
            raise

    def contended(self) -> bool:
        """Someone is waiting for the lock."""
        return any(not fut.done() for _, _, fut in self._waiters)

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # ownership passes directly; _locked stays True
                return
        self._locked = False


class Link:
    """One connection (a TCP socket or a serial bus) and the requests queued on it."""

    def __init__(
        self, conn: Connection, *, timeout: float = 1.0, retries: int = 1, reconnect_max: float = 60.0
    ) -> None:
        self.conn = conn
        self.key = conn.bus_key()
        self.timeout = timeout
        self.retries = retries
        self.reconnect_initial = 0.5
        self.reconnect_max = reconnect_max
        self._client: Any = None
        self._lock = PriorityLock()
        self._backoff = 0.0
        self._next_attempt = 0.0  # monotonic time before which we do not try to connect again
        self.last_error = ""
        self.requests = 0  # counters for status and tests
        self.failures = 0
        self.connects = 0
        self.users = 0
        self._last_frame = 0.0
        # RTU has no transaction id: after a request got no valid answer (or was cancelled), the
        # next frame waits until the line has been quiet for `_drain_for` seconds and what came in
        # is thrown away, so a late answer that arrives before then is never taken for the next
        # request's (one later than that, to a request of the same shape, cannot be told apart)
        self._drain_for = 0.0
        self._failed_at = 0.0
        self._last_rx = 0.0  # monotonic time bytes last arrived on a serial line
        self._draining = False
        self.wrong_answers = 0  # answers that did not match their request (a count, a code, a unit)
        self.wrong_by_unit: dict[int, int] = {}  # the same, per unit asked (devices share a bus)
        # wrong answers per unit since its last good one: the first is logged, the rest counted
        self._wrong_run: dict[int, int] = {}
        self.discarded = 0  # bytes thrown away while the line settled after a failure
        self.discarded_reported = 0  # of which logged
        self.noise = 0  # bytes skipped before an RTU answer (line noise)
        self._expected: tuple[int, int, int, int] | None = None  # the answer a request waits for
        self._register_locks: dict[tuple[int, int], asyncio.Lock] = {}
        self.trace: Callable[[str, int], None] | None = None  # (event, unit) hook for bus tests

    # ------------------------------------------------------------ connection
    def _make_client(self) -> Any:
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
        from pymodbus.framer import FramerType

        c = self.conn
        # reconnect_delay=0: pymodbus must not reconnect behind our back; we own the backoff.
        common: dict[str, Any] = {"timeout": self.timeout, "retries": 0, "reconnect_delay": 0}
        if c.transport == "rtu":
            return AsyncModbusSerialClient(
                str(c.port),
                framer=FramerType.RTU,
                baudrate=c.baudrate,
                parity=c.parity,
                bytesize=c.bytesize,
                stopbits=c.stopbits,
                **common,
            )
        framer = FramerType.RTU if c.transport == "rtu_over_tcp" else FramerType.SOCKET
        return AsyncModbusTcpClient(str(c.host), port=int(c.port or 502), framer=framer, **common)

    def _new_client(self) -> Any:
        client = self._make_client()
        for answer in _fast_register_answers():
            client.register(answer)
        self._guard_decoding(client)
        if self.conn.transport == "rtu":
            self._watch_line(client)
        if self.conn.transport in ("rtu", "rtu_over_tcp"):
            self._hunt_frames(client)
        return client

    def _guard_decoding(self, client: Any) -> None:
        """Fail the request at once on an answer that is framed but does not decode. pymodbus
        raises from inside its protocol's data_received: asyncio logged a traceback per answer,
        and the request waited out its timeout as if nothing had come."""
        ctx = client.ctx
        framer = ctx.framer
        decoder = framer.decoder
        decode_pdu = decoder.decode
        handle = framer.handleFrame
        why: list[str] = []

        def decoding(frame: bytes) -> Any:
            pdu = decode_pdu(frame)
            if pdu is None:
                why.append(_undecodable(decoder, frame))
            return pdu

        def handling(data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, Any]:
            why.clear()
            try:
                return handle(data, exp_devid, exp_tid)  # type: ignore[no-any-return]
            except Exception as exc:  # whatever it is, it must not escape into the event loop
                reason = why[0] if why else f"{exc or type(exc).__name__}"
                future = ctx.response_future
                if future.done():
                    self.discarded += len(data)  # no request waits for it
                else:
                    future.set_exception(MalformedAnswer(reason))
                return len(data), None

        decoder.decode = decoding
        framer.handleFrame = handling

    def _hunt_frames(self, client: Any) -> None:
        """Find an RTU answer behind noise. pymodbus drops everything received when the bytes at
        the front do not end in a good CRC, and waits (until the timeout) when they look like the
        start of a longer frame: one noise byte before an answer lost it, and steady noise kept a
        device offline.

        The answer the request in progress expects (`_expected`: its unit, function code and
        length) tells noise from an answer still arriving. While the front can be that answer and
        it is not complete, nothing is decoded (pymodbus would decode the whole buffer again at
        each chunk received). Only when the front cannot be it (another head, a length the request
        does not fit, a failed CRC) is the answer looked for further on, and only at bytes that
        start with the unit and function code asked for (or its exception) and whose length fits
        the request: register data that happens to hold a frame with a good CRC is never taken for
        an answer. The bytes before the answer found are thrown away and counted in `noise`; so
        are those before the head of one still arriving, when keeping them would lose it (pymodbus
        drops a buffer whose front fails its CRC, and clears one past its size limit)."""
        ctx = client.ctx
        framer = ctx.framer
        decode = framer.decode
        check_crc = framer.check_CRC

        def hunting(data: bytes) -> tuple[int, int, int, bytes]:
            shape = self._expected
            if shape is None:
                return decode(data)  # type: ignore[no-any-return]
            size = _answer_at(data, 0, shape)
            if size and len(data) < size:
                return 0, 0, 0, b""  # the answer asked for, the rest still to come
            found: tuple[int, int, int, bytes] = decode(data)
            if found[3] and size:
                return found
            # the front is not the answer asked for, or failed its CRC: look for it further on
            unit = shape[0]
            arriving = arriving_end = 0
            at = data.find(unit, 1)
            while at > 0:
                length = _answer_at(data, at, shape)
                if length and len(data) - at < length:
                    if not arriving:
                        arriving, arriving_end = at, at + length
                elif length and check_crc(
                    data[at : at + length - 2], int.from_bytes(data[at + length - 2 : at + length])
                ):
                    self._skipped(at)
                    return len(data), unit, 0, data[at + 1 : at + length - 2]
                at = data.find(unit, at + 1)
            if not size and not found[3] and not arriving and _whole_frame(data, unit, check_crc):
                # the front cannot be the answer, yet the whole buffer is one frame from the unit
                # (another or an unknown function code, another byte count): a malformed answer
                return len(data), unit, 0, data[1:-2]
            waiting = not found[0] and not found[3]
            if arriving and (not waiting or arriving_end > ctx.max_buffer_size):
                self._skipped(arriving)
                return arriving, 0, 0, b""
            if found[3] or waiting:
                return found  # a frame _mismatch will name, or the front's rest still to come
            # a failed CRC and no answer behind it: drop it, but its last byte may start the answer
            keep = 1 if data[-1] == unit else 0
            self._skipped(len(data) - keep)
            return len(data) - keep, 0, 0, b""

        framer.decode = hunting

    def _skipped(self, count: int) -> None:
        self.noise += count
        log.debug("%s: skipped %d bytes of noise before an answer", self.describe(), count)

    def _watch_line(self, client: Any) -> None:
        """Note when bytes arrive on the serial line, and swallow them while it settles."""
        ctx = client.ctx
        received = ctx.data_received

        def data_received(data: bytes) -> None:
            self._last_rx = time.monotonic()
            if self._draining:
                self.discarded += len(data)
                return
            received(data)

        ctx.data_received = data_received  # the serial transport calls its protocol's method

    async def _drain(self, client: Any) -> None:
        """Wait until the line has been quiet for `_drain_for` seconds since the failure, then
        throw away what came in. Steady noise cannot hold the bus: the wait ends after four
        quiet periods whatever arrives."""
        quiet, self._drain_for = self._drain_for, 0.0
        before = self.discarded_reported
        self._draining = True
        try:
            deadline = time.monotonic() + 4 * quiet
            while (now := time.monotonic()) < deadline:
                left = max(self._failed_at, self._last_rx) + quiet - now
                if left <= 0:
                    break
                await asyncio.sleep(min(left, deadline - now))
        finally:
            self._draining = False
        ctx = getattr(client, "ctx", None)
        if ctx is not None and ctx.recv_buffer:
            self.discarded += len(ctx.recv_buffer)
            ctx.recv_buffer = b""
        self.discarded_reported = self.discarded
        if self.discarded > before:
            log.info(
                "%s: discarded %d bytes that came after a failed request (a late answer or noise)",
                self.describe(),
                self.discarded - before,
            )

    async def _ensure_connected(self, *, retry_now: bool = False) -> Any:
        if self._client is not None and self._client.connected:
            return self._client
        now = time.monotonic()
        if now < self._next_attempt and not retry_now:
            raise LinkError(
                f"{self.last_error or 'not connected'}; next attempt in {self._next_attempt - now:.1f}s"
            )
        if self._client is not None:
            self._client.close()
        self._client = self._new_client()
        try:
            async with asyncio.timeout(self.timeout + 1):
                ok = await self._client.connect()
        except (TimeoutError, OSError) as exc:
            ok = False
            self.last_error = f"cannot connect to {self.describe()}: {exc or type(exc).__name__}"
        if not ok:
            if not self.last_error.startswith("cannot connect"):
                self.last_error = f"cannot connect to {self.describe()}"
            self._schedule_retry()
            self._client.close()
            raise LinkError(self.last_error)
        self.connects += 1
        self._backoff = 0.0
        return self._client

    def _schedule_retry(self) -> None:
        self._backoff = min(self.reconnect_max, max(self.reconnect_initial, self._backoff * 2))
        self._next_attempt = time.monotonic() + self._backoff * random.uniform(0.8, 1.2)

    def describe(self) -> str:
        c = self.conn
        return str(c.port) if c.transport == "rtu" else f"{c.host}:{c.port} ({c.transport})"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def register_lock(self, unit: int, address: int) -> asyncio.Lock:
        """The lock held across a read-modify-write of one register (a bit point's write), so that
        two of them on the same register — from one device or two sharing this link — never
        interleave and lose a bit."""
        lock = self._register_locks.get((unit, address))
        if lock is None:
            lock = self._register_locks[unit, address] = asyncio.Lock()
        return lock

    # ------------------------------------------------------------ requests
    async def call(
        self,
        unit: int,
        method: str,
        *args: Any,
        priority: int = READ,
        retry_now: bool = False,
        timeout: float | None = None,
        retries: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run one pymodbus request (`read_holding_registers`, `write_coil`, ...) on this link.

        Returns the response PDU; raises DeviceException for an exception response and LinkError
        when there is no usable answer after the retries. `retry_now` tries to connect even during
        the reconnect backoff (a person asked, e.g. a commissioning read after fixing a cable).
        `timeout` and `retries` are the calling device's own (devices sharing one RS-485 bus may
        differ: a slow meter next to a quick barrier controller); the link's are the default.
        """
        # One coroutine, no awaits on the way in when the link is free: this runs for every request
        # of every poll, and each extra level is paid again at every resume.
        if not self._lock.try_acquire():
            await self._lock.acquire(priority)
        held = True
        try:
            if timeout is None:
                timeout = self.timeout
            if retries is None:
                retries = self.retries
            error = ""
            for attempt in range(retries + 1):
                if attempt and self._lock.contended():
                    # a retry queues again behind the requests waiting meanwhile: a unit that
                    # does not answer must not hold a shared bus through all its retries
                    held = False
                    self._lock.release()
                    await self._lock.acquire(priority)
                    held = True
                if self.conn.frame_delay:
                    delay = self.conn.frame_delay - (time.monotonic() - self._last_frame)
                    if delay > 0:
                        await asyncio.sleep(delay)  # the inter-frame pause a slow RS-485 device needs
                client = self._client
                if client is None or not client.connected:
                    client = await self._ensure_connected(retry_now=retry_now and attempt == 0)
                if self._drain_for:
                    await self._drain(client)
                # pymodbus 3.x reads the response timeout from its transaction manager's copy of the
                # connection parameters at each request; we hold the bus, so this is ours alone
                client.ctx.comm_params.timeout_connect = timeout
                self.requests += 1
                if self.trace:
                    self.trace("start", unit)
                self._expected = _answer_shape(unit, method, kwargs)
                try:
                    # pymodbus bounds the request itself: the connect and the wait for the answer
                    # are each a wait_for(timeout_connect) (set above). A second timer of our own per
                    # request cost more than all the link's other bookkeeping.
                    response = await getattr(client, method)(*args, device_id=unit, **kwargs)
                except MalformedAnswer as exc:
                    error = self._wrong_answer(unit, method, f"malformed answer: {exc}")
                    self._after_failure(timeout)
                    continue
                except (TimeoutError, _modbus_exception(), OSError) as exc:
                    error = (
                        f"no valid answer from unit {unit} at {self.describe()}: {exc or type(exc).__name__}"
                    )
                    self._after_failure(timeout)
                    continue
                except asyncio.CancelledError:
                    # the caller gave up (a hub's timeout around a write, a commissioning read's):
                    # the device may still answer, and that answer must not be the next request's
                    self._after_failure(timeout)
                    raise
                finally:
                    self._expected = None
                    self._last_frame = time.monotonic()
                    if self.trace:
                        self.trace("end", unit)
                wrong = _mismatch(unit, method, args, kwargs, response)
                if wrong:
                    # an answer to another request (a late one, or another unit's): an error, never a value
                    error = self._wrong_answer(unit, method, wrong)
                    self._after_failure(timeout)
                    continue
                if self._wrong_run.get(unit):
                    log.info(
                        "%s: unit %d answers again, after %d wrong or malformed answers",
                        self.describe(),
                        unit,
                        self._wrong_run.pop(unit),
                    )
                if response.isError():
                    code = int(getattr(response, "exception_code", 0) or 0)
                    raise DeviceException(code)
                return response
            self.failures += 1
            self.last_error = error
            raise LinkError(error, no_answer=True)
        finally:
            if held:
                self._lock.release()

    def _wrong_answer(self, unit: int, method: str, why: str) -> str:
        """Count an answer that is not the answer to the request, and say why. Logged once per
        run of them (a device answering every request wrongly would otherwise log each one); the
        count is in `wrong_answers` and in the line logged when the unit answers again."""
        self.wrong_answers += 1
        self.wrong_by_unit[unit] = self.wrong_by_unit.get(unit, 0) + 1
        run = self._wrong_run[unit] = self._wrong_run.get(unit, 0) + 1
        error = f"no valid answer from unit {unit} at {self.describe()} to {method}: {why}"
        if run == 1:
            log.warning("%s (further ones are counted in wrong_answers until it answers again)", error)
        return error

    def _after_failure(self, timeout: float) -> None:
        # A late answer to a failed request would be taken for the next one's. TCP: start afresh
        # on a new connection. A serial line cannot be reopened clean: let it go quiet first.
        if self.conn.transport != "rtu":
            if self._client is not None:
                self._client.close()
            return
        self._failed_at = time.monotonic()
        self._drain_for = max(self._drain_for, timeout)
        self._draining = True  # from now until the next frame, what arrives is counted and dropped


def _undecodable(decoder: Any, frame: bytes) -> str:
    """Why pymodbus could not decode the PDU `frame` (its decoder only logs the reason)."""
    shown = frame[:16].hex(" ") + (" ..." if len(frame) > 16 else "")
    if not frame:
        return "an empty PDU"
    fc = frame[0]
    if fc > 0x80:
        return f"exception response {fc:#04x} without its exception code ({shown})"
    pdu_class = decoder.pdu_table.get(fc, (None, None))[decoder.pdu_inx]
    if pdu_class is None:
        return f"unknown function code {fc:#04x} ({shown})"
    try:
        pdu = pdu_class()
        pdu.decode(frame[1:])
        sub_class = decoder.pdu_sub_table.get(fc, {}).get(pdu.sub_function_code, (None, None))[
            decoder.pdu_inx
        ]
        if pdu.sub_function_code >= 0 and sub_class is not None:
            sub_class().decode(frame[1:])
    except Exception as exc:
        return f"function code {fc}: {exc or type(exc).__name__} ({shown})"
    return f"function code {fc}: not decodable ({shown})"


def _whole_frame(data: bytes, unit: int, check_crc: Callable[[bytes, int], bool]) -> bool:
    """`data` is one RTU frame from `unit`: its last two bytes are the CRC of the rest."""
    return len(data) >= 4 and data[0] == unit and bool(check_crc(data[:-2], int.from_bytes(data[-2:])))


def _answer_shape(unit: int, method: str, kwargs: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """(unit, function code, length of the RTU frame, byte count it carries or -1) of the answer
    to this request; None when no answer or no fixed one is expected (a broadcast, another method)."""
    fc = FUNCTION_CODES.get(method)
    if fc is None or not unit:
        return None
    count = int(kwargs.get("count", 1))  # pymodbus's default
    if method in REGISTER_READS:
        data = 2 * count
    elif method in BIT_READS:
        data = (count + 7) // 8
    else:
        return unit, fc, 8, -1  # a write's answer echoes its address and value or count
    return unit, fc, data + 5, data


def _answer_at(data: bytes, at: int, shape: tuple[int, int, int, int]) -> int:
    """The length of the answer `shape` describes if one can start at data[at] (its bytes so far
    agree: unit, function code or its exception, byte count), else 0."""
    unit, fc, size, count = shape
    if data[at] != unit:
        return 0
    if len(data) - at < 2:
        return size
    if data[at + 1] == fc | 0x80:
        return 5  # unit, function code, exception code, CRC
    if data[at + 1] != fc:
        return 0
    if count >= 0 and len(data) - at > 2 and data[at + 2] != count:
        return 0
    return size


def _mismatch(unit: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], response: Any) -> str:
    """Why `response` is not the answer to this request ("" when it is): its unit, its function
    code, or what it holds (the count of a read, the address of a write) differ from the request's."""
    fc = FUNCTION_CODES.get(method)
    got_fc = int(getattr(response, "function_code", 0) or 0) & 0x7F
    if fc is not None and got_fc != fc:
        return f"function code {got_fc}, asked {fc}"
    got_unit = getattr(response, "dev_id", unit)
    if unit and got_unit != unit:
        return f"unit {got_unit}"
    if response.isError():
        return ""
    count = kwargs.get("count")
    if method in REGISTER_READS and count is not None and (n := len(response.registers)) != count:
        return f"{'short' if n < count else 'long'} answer: {n} of {count} registers"
    if method in BIT_READS and count is not None and len(response.bits) != (count + 7) // 8 * 8:
        return f"{len(response.bits) // 8} bytes of bits, asked {count} bits"
    if fc is not None and fc >= 5 and args and getattr(response, "address", args[0]) != args[0]:
        return f"address {response.address}, asked {args[0]}"
    return ""


# ---------------------------------------------------------------- shared links
_links: dict[str, Link] = {}


def acquire(conn: Connection, **kwargs: Any) -> Link:
    """The Link for `conn`, shared with every device on the same bus (serial port or serial server)."""
    if conn.transport == "tcp":
        link = Link(conn, **kwargs)  # TCP devices are polled concurrently: one socket each
        link.users = 1
        return link
    key = conn.bus_key()
    shared = _links.get(key)
    if shared is None:
        shared = _links[key] = Link(conn, **kwargs)
    shared.users += 1
    return shared


def release(link: Link) -> None:
    link.users -= 1
    if link.users <= 0:
        link.close()
        if _links.get(link.key) is link:
            del _links[link.key]
