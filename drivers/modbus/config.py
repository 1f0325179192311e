"""Site-file models of Modbus devices: connection, unit id, schedule and the point map.

Everything a technician can get wrong in a register map is caught here and names the point:
types that do not fit the table, strings without a length, points too large for one request,
overlapping registers of different types, misaligned 32/64-bit values when the device demands
alignment, writes to read-only tables.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from drivers.modbus.codec import DataType, WordOrder, register_count
from edge.driver import DeviceConfig, PointConfig
from edge.model import PointType
from edge.units import Duration
from edge.validation import Strict

Table = Literal["coil", "discrete", "holding", "input"]
BIT_TABLES = ("coil", "discrete")
READ_ONLY_TABLES = ("discrete", "input")
MAX_REGISTERS = 125  # per read request (Modbus spec, FC3/FC4)
MAX_BITS = 2000  # per read request (FC1/FC2)


def _int(value: Any, what: str) -> Any:
    """Accept hex/decimal strings ('0x2000') as well as the integers YAML produces."""
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            raise ValueError(
                f"invalid {what} {value!r}; expected an integer such as 8192 or 0x2000"
            ) from None
    return value


class Connection(Strict):
    """How to reach the device. Devices naming the same serial port share one bus connection."""

    transport: Literal["tcp", "rtu", "rtu_over_tcp"] = "tcp"
    host: str | None = None
    #: TCP port (default 502) or, for `rtu`, the serial device (/dev/ttyUSB0)
    port: int | str | None = None
    baudrate: int = Field(9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    #: pause between frames on a shared bus (some RS-485 devices need a few ms to turn around)
    frame_delay: Duration = 0.0

    @model_validator(mode="after")
    def _check(self) -> Connection:
        if self.transport == "rtu":
            if not isinstance(self.port, str) or not self.port:
                raise ValueError("transport rtu needs port: the serial device, e.g. /dev/ttyUSB0")
        else:
            if not self.host:
                raise ValueError(f"transport {self.transport} needs host: (an IP address or name)")
            if self.port is None:
                self.port = 502
            if not isinstance(self.port, int) or not 0 < self.port < 65536:
                raise ValueError(f"invalid TCP port {self.port!r}; expected 1..65535")
        return self

    def bus_key(self) -> str:
        """Devices with the same key share one connection and are serialised on it."""
        if self.transport == "rtu":
            return f"rtu:{self.port}"
        return f"{self.transport}:{self.host}:{self.port}"


class ModbusPoint(PointConfig):
    """One value in the device's register map. `type` is the register data type here."""

    type: DataType | None = None  # type: ignore[assignment]  # register type, not PointType
    table: Table = "holding"
    address: int = Field(..., ge=0, le=65535)
    order: WordOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = Field(None, ge=0, le=15)
    length: int | None = Field(None, ge=1, le=1000)  # string length in characters
    poll: Duration | None = None  # this point's interval (default: the device's poll)
    verify: bool = False  # read back after a write and compare
    #: force FC16 (write multiple registers) even for one register; some devices refuse FC6
    write_multiple: bool = False

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, v: Any) -> Any:
        return _int(v, "address")

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale cannot be 0 (writes divide by it); use e.g. 0.1 or 10")
        return v

    @model_validator(mode="after")
    def _check(self) -> ModbusPoint:
        where = f"point {self.name!r}"
        if self.type is None:
            self.type = "bool" if self.table in BIT_TABLES else "uint16"
        if self.table in BIT_TABLES and self.type != "bool":
            raise ValueError(
                f"{where}: table {self.table} holds single bits; type must be bool (got {self.type})"
            )
        if self.type == "bit" and self.bit is None:
            raise ValueError(f"{where}: type bit needs bit: 0..15 (which bit of the register)")
        if self.bit is not None and self.type != "bit":
            raise ValueError(f"{where}: bit: is only used with type bit")
        if self.type == "string" and self.length is None:
            raise ValueError(f"{where}: type string needs length: (characters)")
        if self.writable and self.table in READ_ONLY_TABLES:
            raise ValueError(
                f"{where}: table {self.table} is read-only in Modbus; writable points live in coil or holding"
            )
        n = self.count
        limit = 1 if self.table in BIT_TABLES else MAX_REGISTERS
        if n > limit:
            raise ValueError(f"{where}: takes {n} registers; one read request carries at most {limit}")
        if self.address + n > 65536:
            raise ValueError(f"{where}: address {self.address} + {n} registers passes the end of the table")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits, in coil/discrete tables) this point occupies."""
        if self.table in BIT_TABLES:
            return 1
        return register_count(str(self.type), self.length)

    @property
    def end(self) -> int:
        return self.address + self.count

    def point_type(self) -> PointType:
        t = self.type
        if t in ("bool", "bit"):
            return PointType.BOOL
        if t == "string":
            return PointType.STR
        if t in ("float32", "float64") or self.scale != 1 or self.offset != 0:
            return PointType.FLOAT
        return PointType.INT


class ModbusDevice(DeviceConfig):
    """A Modbus device entry of the site file (after its profile was merged in)."""

    driver: Literal["modbus"] = "modbus"
    connection: Connection
    unit: int = Field(1, ge=0, le=255)
    poll: Duration = 5.0
    timeout: Duration = 1.0  # per request
    retries: int = Field(1, ge=0, le=10)  # per request, before the poll counts as failed
    #: registers read and thrown away to save a request. The default bridges any hole that keeps the
    #: request within `max_registers` (Telegraf's `max_insert` at its limit): a device that refuses
    #: a read across unmapped registers gets the request split, and the split is remembered.
    max_gap: int = Field(MAX_REGISTERS, ge=0, le=MAX_REGISTERS)
    max_gap_bits: int = Field(MAX_BITS, ge=0, le=MAX_BITS)
    max_registers: int = Field(MAX_REGISTERS, ge=1, le=MAX_REGISTERS)  # some devices accept fewer
    max_bits: int = Field(MAX_BITS, ge=1, le=MAX_BITS)
    #: device demands 32/64-bit values at even addresses (a profile says so; validation enforces it)
    align: bool = False
    reconnect_max: Duration = 60.0  # cap of the reconnect backoff
    points: list[ModbusPoint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_map(self) -> ModbusDevice:
        # (index of the offending point, key, message): reported at that point's line
        problems: list[tuple[int, str, str]] = []
        for i, p in enumerate(self.points):
            if p.count > (1 if p.table in BIT_TABLES else self.max_registers):
                problems.append(
                    (
                        i,
                        "type",
                        f"point {p.name!r}: takes {p.count} registers but this device reads at most "
                        f"{self.max_registers} per request",
                    )
                )
            if self.align and p.count in (2, 4) and p.type != "string" and p.address % 2:
                problems.append(
                    (
                        i,
                        "address",
                        f"point {p.name!r}: {p.type} at odd address {p.address}; this device "
                        "(align: true) needs 32/64-bit values at even addresses",
                    )
                )
        by_table: dict[str, list[tuple[int, ModbusPoint]]] = {}
        for i, p in enumerate(self.points):
            by_table.setdefault(p.table, []).append((i, p))
        for table, entries in by_table.items():
            entries.sort(key=lambda e: (e[1].address, e[1].end))
            for k, (_ia, a) in enumerate(entries):
                for ib, b in entries[k + 1 :]:
                    if b.address >= a.end:
                        break
                    same_view = a.type == b.type and a.address == b.address and a.order == b.order
                    if not same_view and not (a.type == "bit" and b.type == "bit"):
                        why = " with different types" if a.type != b.type else ""
                        problems.append(
                            (
                                ib,
                                "address",
                                f"points {a.name!r} ({a.type} at {a.address}) and {b.name!r} ({b.type} at "
                                f"{b.address}) overlap in table {table}{why}",
                            )
                        )
        if problems:
            raise ValidationError.from_exception_data(
                "ModbusDevice",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", "{message}", {"message": msg}),
                        loc=("points", i, key),
                        input=None,
                    )
                    for i, key, msg in problems
                ],
            )
        return self
