"""Simulated Modbus field devices for `edge demo` and the tests: a real pymodbus TCP server.

Unit 1 is a CHINT DTSU666 three-phase meter laid out as `drivers/profiles/chint-dtsu666.yaml`
(input registers, float32 high word first, holding the raw scaled counts the profile's `scale`
turns into volts, amps, watts). Unit 2 is a parking-barrier controller as
`drivers/profiles/parking-barrier.yaml` describes: coils open_cmd/close_cmd, discrete inputs
loop_occupied/barrier_open/barrier_closed, holding fault_code and vehicle_count (uint32).

The devices are advanced lazily: every request first moves the models to the current time (in
one-second steps for the meter, event by event for the gate) and then writes their state into the
registers it is about to serve. So nothing runs between requests — no thread, no timer task — and
the values still move as if the devices lived on their own.

Registers are encoded here with `struct`, not with the driver's codec, so a test reading them
through the driver checks the driver's decoding against an independent encoder.
"""

from __future__ import annotations

import contextlib
import errno
import math
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

METER_UNIT = 1
GATE_UNIT = 2

# DTSU666 input registers (address -> raw count of the profile's point; scale noted)
_METER_MAP = {
    0x2006: "voltage_a",  # x0.1 V
    0x2008: "voltage_b",
    0x200A: "voltage_c",
    0x200C: "current_a",  # x0.001 A
    0x200E: "current_b",
    0x2010: "current_c",
    0x2012: "active_power",  # x0.1 W
    0x2014: "active_power_a",
    0x2016: "active_power_b",
    0x2018: "active_power_c",
    0x202A: "power_factor",  # x0.001
    0x2044: "frequency",  # x0.01 Hz
    0x401E: "energy_import",  # kWh
    0x4028: "energy_export",  # kWh
}
# the real meter answers the whole ranges, gaps included (the driver may read across a gap)
_METER_BLOCKS = ((0x2000, 0x50), (0x4000, 0x30))

# parking-barrier controller
_OPEN_CMD, _CLOSE_CMD = 0, 1  # coils
_LOOP, _BARRIER_OPEN, _BARRIER_CLOSED = 0, 1, 2  # discrete inputs
_FAULT_CODE, _VEHICLE_COUNT = 0, 1  # holding registers (vehicle_count: uint32, 2 registers)


def _float32(value: float) -> list[int]:
    """IEEE float32, high word first (ABCD), as two registers."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


class MeterModel:
    """A residential building's supply: load follows a compressed day, energy only goes up."""

    def __init__(self, now: float, seed: int = 1, day: float = 900.0) -> None:
        self.rng = random.Random(seed)
        self.day = day  # seconds per simulated day, short so the demo shows the curve
        self.start = now
        self.last = now
        self.voltage = [2281.0, 2274.0, 2290.0]  # raw, x0.1 V
        self.share = [0.34, 0.31, 0.35]  # of the total power, per phase
        self.pf = 0.95
        self.hz = 50.0
        self.energy_import = 12345.6  # kWh
        self.energy_export = 0.0
        self.power_w = 0.0
        self._step(now)

    def advance(self, now: float) -> None:
        if now - self.last > 3600:  # a long silence: no need to replay every second of it
            self.last = now - 3600
        while now - self.last >= 1.0:
            self.last += 1.0
            self._step(self.last)

    def _step(self, t: float) -> None:
        rng = self.rng
        phase = (t - self.start) / self.day
        self.voltage = [min(2350.0, max(2200.0, v + rng.gauss(0, 1.5))) for v in self.voltage]
        self.pf = min(0.99, max(0.88, self.pf + rng.gauss(0, 0.003)))
        self.hz = min(50.06, max(49.94, self.hz + rng.gauss(0, 0.005)))
        share = [min(0.37, max(0.3, s + rng.gauss(0, 0.003))) for s in self.share]
        total = sum(share)
        self.share = [s / total for s in share]
        # a day's load: low at night, a peak in the evening; plus a little noise
        kw = 14.0 + 9.0 * math.sin(2 * math.pi * (phase + 0.1)) + rng.gauss(0, 0.3)
        self.power_w = max(2000.0, kw * 1000)
        self.energy_import += self.power_w / 3_600_000  # one second of it, in kWh

    def values(self) -> dict[str, float]:
        """Raw counts as the meter's registers hold them (before the profile's scale)."""
        out: dict[str, float] = {}
        for i, ph in enumerate("abc"):
            p = self.power_w * self.share[i]
            out[f"voltage_{ph}"] = self.voltage[i]
            out[f"current_{ph}"] = p / (self.voltage[i] * 0.1 * self.pf) * 1000
            out[f"active_power_{ph}"] = p * 10
        out["active_power"] = self.power_w * 10
        out["power_factor"] = self.pf * 1000
        out["frequency"] = self.hz * 100
        out["energy_import"] = self.energy_import
        out["energy_export"] = self.energy_export
        return out


class GateModel:
    """A barrier arm with limit switches and a vehicle loop.

    A vehicle arrives now and then and waits on the loop; if the arm opens it drives through
    (`vehicle_count` + 1), otherwise it gives up after a while. The arm takes `travel` seconds to
    move (both limit switches off meanwhile) and closes by itself `close_delay` seconds after the
    loop is clear, or at once on close_cmd.
    """

    travel = 1.5
    pass_time = 3.0  # from the arm being up to the vehicle having left the loop
    patience = 30.0
    close_delay = 6.0

    def __init__(
        self, now: float, seed: int = 2, arrivals: tuple[float, float] | None = (25.0, 70.0)
    ) -> None:
        self.rng = random.Random(seed)
        self.arrivals = arrivals
        self.arm = "closed"  # closed | opening | open | closing
        self.arm_since = now  # when the arm started its current state
        self.vehicle_since: float | None = None
        self.loop_clear_since = now
        self.count = 0
        self.fault_code = 0
        self.next_arrival = self._draw(now)
        self.now = now

    def _draw(self, now: float) -> float:
        return math.inf if self.arrivals is None else now + self.rng.uniform(*self.arrivals)

    def advance(self, now: float) -> None:
        for _ in range(10_000):  # bounded; each pass handles one due event
            due = self._next_event()
            if due is None or due[0] > now:
                break
            t, event = due
            self.now = t
            event(t)
        self.now = max(self.now, now)

    def _next_event(self) -> tuple[float, Callable[[float], None]] | None:
        events: list[tuple[float, Callable[[float], None]]] = []
        if self.arm in ("opening", "closing"):
            events.append((self.arm_since + self.travel, self._travel_done))
        if self.vehicle_since is None:
            events.append((self.next_arrival, self._arrive))
        elif self.arm == "open":
            events.append((max(self.arm_since, self.vehicle_since) + self.pass_time, self._pass))
        elif self.arm != "opening":
            events.append((self.vehicle_since + self.patience, self._give_up))
        if self.arm == "open" and self.vehicle_since is None:
            events.append((max(self.arm_since, self.loop_clear_since) + self.close_delay, self._close))
        return min(events, key=lambda e: e[0]) if events else None

    def _travel_done(self, t: float) -> None:
        self.arm = "open" if self.arm == "opening" else "closed"
        self.arm_since = t

    def _arrive(self, t: float) -> None:
        self.vehicle_since = t

    def _leave(self, t: float) -> None:
        self.vehicle_since = None
        self.loop_clear_since = t
        self.next_arrival = self._draw(t)

    def _pass(self, t: float) -> None:
        self.count = (self.count + 1) % 2**32
        self._leave(t)

    def _give_up(self, t: float) -> None:
        self._leave(t)

    def _close(self, t: float) -> None:
        self.arm, self.arm_since = "closing", t

    def open(self) -> None:
        if self.arm in ("closed", "closing"):
            self.arm, self.arm_since = "opening", self.now

    def close(self) -> None:
        if self.arm in ("open", "opening"):
            self.arm, self.arm_since = "closing", self.now

    @property
    def loop_occupied(self) -> bool:
        return self.vehicle_since is not None

    @property
    def barrier_open(self) -> bool:
        return self.arm == "open"

    @property
    def barrier_closed(self) -> bool:
        return self.arm == "closed"


def _set_bit(registers: list[int], start_register: int, address: int, on: bool) -> None:
    # bit tables are packed 16 to a register, lowest address in the lowest bit
    reg, bit = divmod(address - start_register * 16, 16)
    if 0 <= reg < len(registers):
        registers[reg] = (registers[reg] | (1 << bit)) if on else (registers[reg] & ~(1 << bit))


class FieldDeviceSimulator:
    """A pymodbus TCP server with the simulated meter (unit 1) and barrier controller (unit 2)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        vehicle_arrivals: tuple[float, float] | None = (25.0, 70.0),
        seed: int = 1,
    ) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        now = clock()
        self.meter = MeterModel(now, seed=seed)
        self.gate = GateModel(now, seed=seed + 1, arrivals=vehicle_arrivals)
        self.requests = 0
        self._server: Any = None

    # ------------------------------------------------------------ the two devices
    def _meter_device(self) -> Any:
        from pymodbus.simulator import DataType, SimData, SimDevice

        inputs = [SimData(a, values=[0] * n, datatype=DataType.REGISTERS) for a, n in _METER_BLOCKS]

        async def action(
            fc: int, start: int, address: int, count: int, registers: list[int], set_values: Any
        ) -> Any:
            self.requests += 1
            if fc == 4:
                self.meter.advance(self.clock())
                values = self.meter.values()
                for addr, name in _METER_MAP.items():
                    off = addr - start
                    if 0 <= off < len(registers) - 1:
                        registers[off : off + 2] = _float32(values[name])
            return None

        def parked(kind: Any) -> list[Any]:  # pymodbus needs every table: one unused cell far away
            return [SimData(65000, count=1, datatype=kind)]

        return SimDevice(
            METER_UNIT,
            simdata=(parked(DataType.BITS), parked(DataType.BITS), parked(DataType.INVALID), inputs),
            action=action,
        )

    def _gate_device(self) -> Any:
        from pymodbus.constants import ExcCodes
        from pymodbus.simulator import DataType, SimData, SimDevice

        coils = [SimData(0, values=[False, False], datatype=DataType.BITS)]
        discretes = [SimData(0, values=[False, False, False], datatype=DataType.BITS)]
        holding = [SimData(0, values=[0, 0, 0], datatype=DataType.REGISTERS)]
        inputs = [SimData(65000, count=1, datatype=DataType.INVALID)]

        async def action(
            fc: int, start: int, address: int, count: int, registers: list[int], set_values: Any
        ) -> Any:
            self.requests += 1
            gate = self.gate
            gate.advance(self.clock())
            if fc in (5, 15):  # coil write: the controller acts on the command at once
                for i, on in enumerate(set_values or []):
                    if on and address + i == _OPEN_CMD:
                        gate.open()
                    elif on and address + i == _CLOSE_CMD:
                        gate.close()
                return None  # the coil keeps the written value until the next read
            if fc in (6, 16):
                return ExcCodes.ILLEGAL_ADDRESS  # fault code and counter are read-only
            if fc == 1:  # the coils are pulses: the controller has consumed them
                _set_bit(registers, start, _OPEN_CMD, False)
                _set_bit(registers, start, _CLOSE_CMD, False)
            elif fc == 2:
                _set_bit(registers, start, _LOOP, gate.loop_occupied)
                _set_bit(registers, start, _BARRIER_OPEN, gate.barrier_open)
                _set_bit(registers, start, _BARRIER_CLOSED, gate.barrier_closed)
            elif fc == 3:
                registers[_FAULT_CODE - start] = gate.fault_code
                registers[_VEHICLE_COUNT - start] = gate.count >> 16
                registers[_VEHICLE_COUNT - start + 1] = gate.count & 0xFFFF
            return None

        return SimDevice(GATE_UNIT, simdata=(coils, discretes, holding, inputs), action=action)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        """Listen on host:port (port 0: a free one); returns the bound port. OSError if taken."""
        from pymodbus.server import ModbusTcpServer

        if self.port:
            _check_free(self.host, self.port)  # before pymodbus, which logs a bind failure as an error
        server = ModbusTcpServer([self._meter_device(), self._gate_device()], address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus's word for "bind failed" (lost a race for the port)
            with contextlib.suppress(Exception):
                await server.shutdown()
            raise OSError(errno.EADDRINUSE, f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self._server = server
        transport: Any = server.transport  # an asyncio Server once listening
        self.port = int(transport.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()


def _check_free(host: str, port: int) -> None:
    """Raise OSError if host:port cannot be bound (asyncio binds with SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
