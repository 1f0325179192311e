"""Server mode: selected points of the site served as a Modbus TCP server (for a BMS or SCADA).

The optional `modbus_server:` section maps point ids to register addresses:

    modbus_server:
      listen: 0.0.0.0:5020
      unit: 1                     # 0 = answer every unit id
      points:
        - {point: meter-b1.voltage, address: 0, type: float32}
        - {point: gate-north.barrier_open, table: coil, address: 0}

Values are encoded from the hub's latest readings at the moment a request arrives, so the server
is never behind the hub. A point without a good value reads as NaN (floats) or 0. A bool reads
1 or 0 in any numeric type. A value its register type cannot hold (70000 in a uint16, a negative
value in an unsigned one, text in a number) is not served as some other number: a read of that
point's registers is answered with exception 0x04 (server device failure), the point is logged once
and each such read counted (`out_of_range`). The map is read-only: writes are refused with
"illegal function"/"illegal address" by the datastore.

A read that spans registers no point occupies is refused with "illegal data address" unless the
site says `fill_gaps: zeros` (then the holes between the lowest and the highest mapped register of
a table read as 0). A request for a unit id the server does not serve is answered with exception
0x0B, "gateway target device failed to respond": the gateway is the BMS's path to the site's
devices and no device answers at that unit (0x02 would send the technician looking at register
addresses that are right). Each such unit is logged once and counted.

Modbus TCP has no authentication: whoever reaches the port reads the map. So a point above
`max_privacy` (default `public`) is served as if it had no value (NaN or 0), whatever the map says,
and a point's class is read at each request (a rule's `set:` point can rise to the class of what
it copied); such points are named in the log once and counted (`withheld_privacy`).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import typing
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from drivers.modbus import codec
from drivers.modbus.codec import DataType, WordOrder
from edge.model import PRIVACY_RANK, Privacy, Quality
from edge.validation import ListenAddress, Strict, valid_listen

if TYPE_CHECKING:
    from edge.plugins import ComponentContext

log = logging.getLogger("drivers.modbus.server")


class ServedPoint(Strict):
    point: str  # device.point
    table: Literal["coil", "discrete", "holding", "input"] = "holding"
    address: int = Field(..., ge=0, le=65535)
    type: DataType = "float32"
    order: WordOrder = "ABCD"
    scale: float = 1.0
    length: int | None = None

    @field_validator("point")
    @classmethod
    def _pid(cls, v: str) -> str:
        dev, sep, name = v.partition(".")
        if not sep or not dev or not name:
            raise ValueError(f"invalid point {v!r}; expected DEVICE.POINT such as meter-b1.voltage")
        return v

    @model_validator(mode="after")
    def _check(self) -> ServedPoint:
        if self.table in ("coil", "discrete"):
            self.type = "bool"
        if self.type == "string" and not self.length:
            raise ValueError(f"point {self.point!r}: type string needs length:")
        if self.scale == 0:
            raise ValueError(f"point {self.point!r}: scale cannot be 0")
        return self

    @property
    def count(self) -> int:
        return 1 if self.table in ("coil", "discrete") else codec.register_count(self.type, self.length)


class ServerConfig(ListenAddress, Strict):
    listen: str = "0.0.0.0:5020"
    unit: int = Field(1, ge=0, le=255)
    #: what a read across registers no point occupies gets: "illegal data address", or zeros
    fill_gaps: Literal["refuse", "zeros"] = "refuse"
    #: the highest privacy class served; points above it read as having no value
    max_privacy: Privacy = Privacy.PUBLIC
    points: list[ServedPoint] = Field(default_factory=list)

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, v: object) -> str:
        return valid_listen(v, "0.0.0.0:5020")

    @model_validator(mode="after")
    def _overlaps(self) -> ServerConfig:
        seen: dict[tuple[str, int], str] = {}
        for p in self.points:
            for a in range(p.address, p.address + p.count):
                other = seen.get((p.table, a))
                if other is not None:
                    raise ValueError(f"points {other!r} and {p.point!r} overlap at {p.table} address {a}")
                seen[(p.table, a)] = p.point
        return self


_FC_TABLE = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    4: "input",
}


class _UnitGate:
    """The server's datastore as pymodbus sees it: the served unit's requests go through, any other
    unit gets exception 0x0B at once (pymodbus would log a traceback and answer "device failure")."""

    def __init__(self, core: Any, component: ModbusServerComponent) -> None:
        self.core = core
        self.component = component

    def device_ids(self) -> list[int]:
        return list(self.core.device_ids())

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1) -> Any:
        if device_id != self.component.config.unit:
            return self.component.unknown_unit(device_id)
        return await self.core.async_getValues(device_id, func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int, values: Any) -> Any:
        if device_id != self.component.config.unit:
            return self.component.unknown_unit(device_id)
        return await self.core.async_setValues(device_id, func_code, address, values)


#: requests of one connection decoded and waiting for their answer; past it the connection is not
#: read until the answers catch up (TCP holds the rest: nothing is dropped)
MAX_IN_FLIGHT = 32


@functools.cache
def _server_class() -> type[Any]:
    """pymodbus' TCP server whose connections answer every request they receive, in order.

    pymodbus' own connection keeps one "last request" slot: a second request arriving in the same
    TCP segment was left unread, and one arriving while the first was answered replaced it (the
    first went unanswered, the second was answered twice). Here each connection frames every
    complete request in its buffer with pymodbus' framer and decoder, queues them, and one task per
    connection answers them one after the other through the same datastore. Built on first use:
    pymodbus is imported only by a site that serves."""
    from pymodbus.constants import ExcCodes
    from pymodbus.exceptions import NoSuchIdException
    from pymodbus.pdu import ExceptionResponse
    from pymodbus.server import ModbusTcpServer
    from pymodbus.server.requesthandler import ServerRequestHandler

    class Connection(ServerRequestHandler):  # type: ignore[misc]
        def __init__(self, owner: Any) -> None:
            super().__init__(owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect)
            # the buffer holds at most a partial frame, or what waits while reading is paused
            self.max_buffer_size = 1 << 20
            #: (request, or the ready exception answer of a frame that does not decode; client address)
            self.queue: collections.deque[tuple[Any, bool, Any]] = collections.deque()
            self.worker: asyncio.Task[None] | None = None
            self.paused = False

        def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
            used = self.frame(data, addr)
            if self.queue and (self.worker is None or self.worker.done()):
                self.worker = self.loop.create_task(self.answer_in_order())
                self.server.workers.add(self.worker)
                self.worker.add_done_callback(self.server.workers.discard)
            if len(self.queue) >= MAX_IN_FLIGHT and not self.paused and self.transport:
                self.paused = True
                typing.cast(asyncio.ReadTransport, self.transport).pause_reading()
            return used

        def frame(self, data: bytes, addr: Any) -> int:
            """Queue every complete request at the start of `data`; the bytes they took."""
            used = 0
            while len(self.queue) < MAX_IN_FLIGHT:
                size, unit, tid, pdu_bytes = self.framer.decode(data[used:])
                if not size:
                    break  # a partial frame: the rest arrives with the next segment
                used += size
                if not pdu_bytes:
                    continue
                code = pdu_bytes[0]
                pdu = None if code & 0x80 else self.framer.decoder.decode(pdu_bytes)
                if pdu is None:
                    # the answer names the request's function, as the spec wants (pymodbus
                    # answered function 0): 01 for a function it does not know, 03 for a known
                    # one whose fields are not acceptable (a read of 0 or 126 registers)
                    known = not code & 0x80 and code in self.framer.decoder.list_function_codes()
                    reason = ExcCodes.ILLEGAL_VALUE if known else ExcCodes.ILLEGAL_FUNCTION
                    self.queue.append((ExceptionResponse(code, reason, unit, tid), True, addr))
                    continue
                pdu.dev_id, pdu.transaction_id = unit, tid
                self.queue.append((pdu, False, addr))
            return used

        async def answer_in_order(self) -> None:
            while self.queue:
                item, ready, addr = self.queue[0]
                response = item if ready else await self.answer(item)
                self.queue.popleft()
                self.server_send(response, addr)
                if self.paused and len(self.queue) <= MAX_IN_FLIGHT // 2:
                    # what arrived while the queue was full waits in the buffer: frame it first
                    self.recv_buffer = self.recv_buffer[self.frame(self.recv_buffer, addr) :]
                    if len(self.queue) < MAX_IN_FLIGHT and self.transport:
                        self.paused = False
                        typing.cast(asyncio.ReadTransport, self.transport).resume_reading()

        async def answer(self, pdu: Any) -> Any:
            try:
                response = await pdu.datastore_update(self.server.context, pdu.dev_id)
            except NoSuchIdException:
                response = ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
            except Exception:
                log.exception("modbus_server: request %s failed; answered server device failure", pdu)
                response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
            response.transaction_id = pdu.transaction_id
            response.dev_id = pdu.dev_id
            return response

        def send(self, data: bytes, addr: tuple[Any, ...] | None = None) -> None:
            kept = self.recv_buffer  # pymodbus empties it on each send: requests still to frame
            super().send(data, addr)
            self.recv_buffer = kept

        def callback_disconnected(self, exc: Exception | None) -> None:
            super().callback_disconnected(exc)
            self.queue.clear()
            if self.worker is not None:
                self.worker.cancel()

    class Server(ModbusTcpServer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            #: the connections' answering tasks, awaited at shutdown
            self.workers: set[asyncio.Task[None]] = set()

        def callback_new_connection(self) -> Connection:
            return Connection(self)

        async def shutdown(self) -> None:
            await super().shutdown()  # closes every connection, which cancels its task
            await asyncio.gather(*self.workers, return_exceptions=True)

    return Server


class ModbusServerComponent:
    """Runtime component serving the hub's latest values."""

    name = "modbus_server"

    def __init__(
        self,
        config: ServerConfig,
        latest: dict[str, Any],
        known: set[str],
        infos: dict[str, Any],
    ) -> None:
        self.config = config
        self.latest = latest
        self.infos = infos  # point id -> PointInfo, live (the hub's): each point's privacy class
        self.max_rank = PRIVACY_RANK[config.max_privacy]
        self.withheld_privacy = 0  # values not served because of their point's class
        self._withheld_named: set[str] = set()
        #: reads refused because a point's value does not fit its register (exception 0x04)
        self.out_of_range = 0
        self._unfit_named: dict[tuple[str, int], str] = {}  # (table, address) -> point, logged
        self.unknown = sorted(p.point for p in config.points if p.point not in known)
        self.points = [p for p in config.points if p.point in known]
        self.requests = 0
        #: requests per unit id this server does not serve (at most 256 keys: unit ids are a byte)
        self.unknown_units: dict[int, int] = {}
        #: what the map allows but may not serve (check.range_warnings), logged at start
        self.warnings: list[str] = []
        self.port: int | None = None
        self._server: Any = None
        self._task: asyncio.Task[Any] | None = None

    def unknown_unit(self, unit: int) -> Any:
        """Count a request for `unit`, log the first one, and give the exception to answer."""
        from pymodbus.constants import ExcCodes

        seen = self.unknown_units.get(unit, 0)
        self.unknown_units[unit] = seen + 1
        if not seen:
            log.warning(
                "modbus_server: a client asked for unit %d, which this server does not serve (it answers "
                "unit %d); answered exception 0x0B (gateway target device failed to respond). Further "
                "requests for unit %d are counted (unknown_unit_requests), not logged",
                unit,
                self.config.unit,
                unit,
            )
        return ExcCodes.GATEWAY_NO_RESPONSE

    @property
    def counters(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "unknown_unit_requests": sum(self.unknown_units.values()),
            "withheld_privacy": self.withheld_privacy,
            "out_of_range": self.out_of_range,
        }

    def _devices(self) -> Any:
        from pymodbus.simulator import DataType as SimType
        from pymodbus.simulator import SimData, SimDevice

        blocks: dict[str, list[Any]] = {"coil": [], "discrete": [], "holding": [], "input": []}
        spans: dict[str, tuple[int, int]] = {}
        for p in self.points:
            if p.table in ("coil", "discrete"):
                # bits between two points already read as off: pymodbus packs a bit table whole
                blocks[p.table].append(SimData(p.address, values=[False], datatype=SimType.BITS))
            elif self.config.fill_gaps == "zeros":
                lo, hi = spans.get(p.table, (p.address, p.address + p.count))
                spans[p.table] = (min(lo, p.address), max(hi, p.address + p.count))
            else:
                blocks[p.table].append(SimData(p.address, values=[0] * p.count, datatype=SimType.REGISTERS))
        for table, (lo, hi) in spans.items():
            blocks[table].append(SimData(lo, values=[0] * (hi - lo), datatype=SimType.REGISTERS))
        for table, b in blocks.items():
            if not b:  # pymodbus needs every table: park an unused cell far away
                kind = SimType.BITS if table in ("coil", "discrete") else SimType.INVALID
                blocks[table].append(SimData(65000, count=1, datatype=kind))
        return SimDevice(
            self.config.unit,
            simdata=(blocks["coil"], blocks["discrete"], blocks["holding"], blocks["input"]),
            action=self._refresh,
        )

    async def _refresh(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: Any,
    ) -> Any:
        """Before each request, write the current values of the requested table into its block."""
        self.requests += 1
        if set_values is not None:
            from pymodbus.constants import ExcCodes

            return ExcCodes.ILLEGAL_FUNCTION  # read-only: the gateway is not controlled this way
        table = _FC_TABLE.get(function_code)
        refused: ValueError | None = None
        for p in self.points:
            if p.table != table:
                continue
            r = self.latest.get(p.point)
            info = self.infos.get(p.point)
            if info is not None and PRIVACY_RANK[info.privacy] > self.max_rank:
                self._withhold(p.point, info.privacy)
                r = None
            good = r is not None and r.quality == Quality.GOOD and r.value is not None
            current = r.value if (good and r is not None) else None
            if table in ("coil", "discrete"):
                # bit blocks are packed 16 bits per register
                off = p.address - start_address * 16
                reg, bit = divmod(off, 16)
                if 0 <= reg < len(registers):
                    on = bool(current)
                    registers[reg] = (registers[reg] | (1 << bit)) if on else (registers[reg] & ~(1 << bit))
                continue
            value: Any = current if good else (math.nan if p.type.startswith("float") else 0)
            try:
                regs = _encode(value, p)
            except ValueError as exc:
                # a plausible wrong number would be worse than none: a read of these registers
                # fails, and the registers keep what they held (a neighbour's read sees no change)
                if address < p.address + p.count and p.address < address + count:
                    refused = refused or exc
                    self._unfit(p, value, exc)
                continue
            off = p.address - start_address
            registers[off : off + len(regs)] = regs
        if refused is not None:
            from pymodbus.constants import ExcCodes

            return ExcCodes.DEVICE_FAILURE
        return None

    def _unfit(self, p: ServedPoint, value: Any, exc: ValueError) -> None:
        """Count a read refused because `p`'s value does not fit its register; log it once per entry."""
        self.out_of_range += 1
        key = (p.table, p.address)
        if key not in self._unfit_named:
            self._unfit_named[key] = p.point
            log.warning(
                "modbus_server: %s (%s %s at %s address %d) cannot be served: %s; reads of its registers "
                "are answered with exception 0x04 (server device failure) while it does not fit. Further "
                "refusals are counted (out_of_range), not logged",
                p.point,
                p.type,
                f"scale {p.scale:g}" if p.scale != 1 else "unscaled",
                p.table,
                p.address,
                exc,
            )

    def _withhold(self, point: str, klass: str) -> None:
        self.withheld_privacy += 1
        if point not in self._withheld_named:
            self._withheld_named.add(point)
            log.warning(
                "modbus_server: %s is %s data, above max_privacy %s: served as having no value",
                point,
                klass,
                self.config.max_privacy,
            )

    async def start(self) -> None:
        if self.unknown:
            log.warning("modbus_server: unknown points not served: %s", ", ".join(self.unknown))
        for line in self.warnings:
            log.warning("%s", line)
        self._server = _server_class()(self._devices(), address=(self.config.host, self.config.port))
        if self.config.unit != 0:  # unit 0 answers every unit id
            self._server.context = _UnitGate(self._server.context, self)
        await self._server.serve_forever(background=True)
        sock = self._server.transport.sockets[0] if getattr(self._server, "transport", None) else None
        self.port = sock.getsockname()[1] if sock is not None else self.config.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def status(self) -> dict[str, Any]:
        return {
            "listen": self.config.listen,
            "port": self.port,
            "points": len(self.points),
            "unknown_points": self.unknown,
            "requests": self.requests,
            "fill_gaps": self.config.fill_gaps,
            "max_privacy": str(self.config.max_privacy),
            "withheld_privacy": self.withheld_privacy,
            "out_of_range": self.out_of_range,
            "out_of_range_points": sorted(set(self._unfit_named.values())),
            "unknown_unit_requests": sum(self.unknown_units.values()),
            "unknown_units": {str(u): n for u, n in sorted(self.unknown_units.items())},
        }


def _encode(value: Any, p: ServedPoint) -> list[int]:
    """The registers of `p` holding `value`; ValueError when its type cannot hold it. A bool is 1 or
    0 in any numeric type, unscaled (a relay reads 1, as a BMS expects of a status register)."""
    if isinstance(value, bool) and p.type in codec.NUMERIC_TYPES:
        return codec.encode(int(value), p.type, p.order)
    return codec.encode(value, p.type, p.order, scale=p.scale, length=p.length)


def create(ctx: ComponentContext) -> ModbusServerComponent | None:
    config = ctx.site.sections.get("modbus_server")
    if config is None:
        return None
    assert isinstance(config, ServerConfig)
    from drivers.modbus.check import range_warnings

    known = {p.id for p in ctx.site.point_infos()}
    component = ModbusServerComponent(config, ctx.hub.latest, known, ctx.hub.points)
    component.warnings = range_warnings(ctx.site)
    return component
