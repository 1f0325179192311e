"""Register data types: how many registers a type takes, and decoding/encoding in every word order.

Word/byte orders name the four bytes of a 32-bit value as the device sends them, A being the most
significant: ABCD is big-endian (the Modbus default), CDAB swaps the 16-bit words (common on
meters), BADC swaps the bytes inside each word, DCBA is fully little-endian. The same rule extends
to 64-bit values (word order reversed for CDAB/DCBA, bytes swapped for BADC/DCBA) and to 16-bit
values (only the byte swap applies). Scale and offset turn raw counts into engineering values:
`value = raw * scale + offset`.

Pure functions, no I/O: the driver, the Modbus server mode and the commissioning probe share them.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Literal

DataType = Literal[
    "bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"
]
WordOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]

ORDERS: tuple[WordOrder, ...] = ("ABCD", "CDAB", "BADC", "DCBA")
NUMERIC_TYPES: tuple[DataType, ...] = (
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
)
#: struct format (big-endian) and register count of each fixed-size type
_FORMATS: dict[str, tuple[str, int]] = {
    "int16": (">h", 1),
    "uint16": (">H", 1),
    "int32": (">i", 2),
    "uint32": (">I", 2),
    "int64": (">q", 4),
    "uint64": (">Q", 4),
    "float32": (">f", 2),
    "float64": (">d", 4),
}
INTEGER_TYPES = frozenset({"int16", "uint16", "int32", "uint32", "int64", "uint64"})


class DecodeError(ValueError):
    """Registers that cannot be a value of the configured type (wrong count, not text)."""


def register_count(data_type: str, length: int | None = None) -> int:
    """Registers one value of `data_type` occupies (`length` is the string length in characters)."""
    if data_type in _FORMATS:
        return _FORMATS[data_type][1]
    if data_type == "string":
        return max(1, ((length or 2) + 1) // 2)
    return 1  # bool / bit in a register table take one register


def _to_bytes(registers: Sequence[int], order: str) -> bytes:
    # struct does the byte work in C: this runs for every value of every poll
    words = registers[::-1] if order in ("CDAB", "DCBA") else registers
    return struct.pack(("<" if order in ("BADC", "DCBA") else ">") + "H" * len(words), *words)


def _from_bytes(data: bytes, order: str) -> list[int]:
    words = list(struct.unpack(("<" if order in ("BADC", "DCBA") else ">") + "H" * (len(data) // 2), data))
    return words[::-1] if order in ("CDAB", "DCBA") else words


_WORDS: dict[tuple[int, bool], struct.Struct] = {}


def pack_registers(registers: Sequence[int], little: bool = False) -> bytes:
    """The registers of one answer as bytes: each word big-endian as sent, or byte-swapped.

    With both copies every fixed-size value of a request is one `unpack_from` (see `unpacker`)."""
    key = (len(registers), little)
    packer = _WORDS.get(key)
    if packer is None:
        packer = _WORDS[key] = struct.Struct(("<" if little else ">") + "H" * len(registers))
    return packer.pack(*registers)


def unpacker(data_type: str, order: str) -> tuple[Callable[[bytes, int], tuple[object, ...]], bool] | None:
    """How to read one raw `data_type` value in `order` straight from `pack_registers` bytes:
    (unpack_from, whether it reads the byte-swapped copy). None for types that are not a fixed-size
    number (strings, bits, bools: `decode_raw` handles those).

    Word reversal is the byte order of the whole value read over the other copy: CDAB is the
    little-endian value over the byte-swapped words, DCBA over the words as sent, BADC the
    big-endian value over the byte-swapped words. Same results as `decode_raw`, in one C call."""
    spec = _FORMATS.get(data_type)
    if spec is None:
        return None
    reversed_words = order in ("CDAB", "DCBA")
    swapped_bytes = order in ("CDAB", "BADC")
    fmt = ("<" if reversed_words else ">") + spec[0][1:]
    return struct.Struct(fmt).unpack_from, swapped_bytes


def unpacker_for_all(
    fields: Sequence[tuple[str, str, int]],
) -> tuple[Callable[[bytes], tuple[object, ...]], bool] | None:
    """One C call for every value of an answer: `fields` are (data_type, order, register offset)
    in ascending offset. Returns (unpack_from over `pack_registers` bytes, whether it reads the
    byte-swapped copy) giving the raw values in `fields` order, or None when they cannot share one
    format: a type that is not a fixed-size number, overlapping values, or mixed word orders that
    need different copies or byte orders (a meter's map nearly always uses one order)."""
    kinds: set[tuple[bool, bool]] = set()
    parts: list[str] = []
    at = 0
    for data_type, order, offset in fields:
        spec = _FORMATS.get(data_type)
        if spec is None or offset < at:
            return None
        kinds.add((order in ("CDAB", "DCBA"), order in ("CDAB", "BADC")))
        if offset > at:
            parts.append(f"{2 * (offset - at)}x")
        parts.append(spec[0][1:])
        at = offset + spec[1]
    if len(kinds) != 1:
        return None
    ((little, swapped),) = kinds
    return struct.Struct(("<" if little else ">") + "".join(parts)).unpack_from, swapped


def decode_raw(
    registers: Sequence[int], data_type: str, order: str = "ABCD", bit: int | None = None
) -> object:
    """The raw (unscaled) value of `registers`: int, float, bool or str."""
    if data_type in _FORMATS:
        fmt, n = _FORMATS[data_type]
        if len(registers) < n:
            raise DecodeError(f"{data_type} needs {n} registers, got {len(registers)}")
        return struct.unpack(fmt, _to_bytes(registers[:n], order))[0]
    if data_type == "string":
        # Strings are sequences of bytes: only the byte swap inside a word applies.
        swap_order = "BADC" if order in ("BADC", "DCBA") else "ABCD"
        text = _to_bytes(registers, swap_order).rstrip(b"\x00 ")
        try:
            return text.decode("ascii")
        except UnicodeDecodeError:
            raise DecodeError(f"registers are not ASCII text: {text!r}") from None
    if not registers:
        raise DecodeError(f"{data_type} needs 1 register, got 0")
    if data_type == "bit":
        return bool((registers[0] >> (bit or 0)) & 1)
    if data_type == "bool":
        return registers[0] != 0
    raise DecodeError(f"unknown data type {data_type!r}")


def scale_value(raw: object, data_type: str, scale: float = 1.0, offset: float = 0.0) -> object:
    """Apply scale and offset; integers stay integers when neither changes them."""
    if isinstance(raw, bool) or isinstance(raw, str):
        return raw
    assert isinstance(raw, int | float)
    if scale == 1 and offset == 0:
        return raw
    value = raw * scale + offset
    # Round away binary noise from the scale factor (0.1 is not exact in binary).
    return round(value, 9) if math.isfinite(value) else value


def decode(
    registers: Sequence[int],
    data_type: str,
    order: str = "ABCD",
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    bit: int | None = None,
) -> object:
    """The engineering value of `registers` (raw, then scaled)."""
    return scale_value(decode_raw(registers, data_type, order, bit), data_type, scale, offset)


def encode(
    value: object,
    data_type: str,
    order: str = "ABCD",
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    length: int | None = None,
    finite: bool = False,
) -> list[int]:
    """Registers that hold the engineering `value`; ValueError says why a value does not fit.

    A value beyond the register's range is refused naming the range (in engineering units when
    scaled). Integer registers never take NaN or infinities; float registers refuse them too with
    `finite` (every write to a device: NaN bits would become a setpoint), while the Modbus server
    mode encodes NaN on purpose, as "no value"."""
    if data_type in ("bool", "bit"):
        return [1 if value else 0]
    if data_type == "string":
        text = str(value).encode("ascii", errors="strict")
        n = register_count("string", length)
        if len(text) > n * 2:
            raise ValueError(f"text of {len(text)} characters does not fit {n} registers")
        swap_order = "BADC" if order in ("BADC", "DCBA") else "ABCD"
        return _from_bytes(text.ljust(n * 2, b"\x00"), swap_order)
    if data_type not in _FORMATS:
        raise ValueError(f"unknown data type {data_type!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    fmt, _n = _FORMATS[data_type]
    if isinstance(value, float) and not math.isfinite(value):
        if finite or data_type in INTEGER_TYPES:
            raise ValueError(f"{value!r} is not a finite number: {data_type} registers take finite values")
        return _from_bytes(struct.pack(fmt, value), order)
    lo, hi = LIMITS[data_type]
    try:
        raw: float = (value - offset) / scale if (scale != 1 or offset != 0) else value
        if data_type in INTEGER_TYPES:
            raw_int = round(raw)  # OverflowError when a finite value scales past a float
            if lo <= raw_int <= hi:
                return _from_bytes(struct.pack(fmt, raw_int), order)
            raw_shown = f"raw {raw_int}, " if abs(raw_int) < 10**30 else ""
        else:
            raw_float = float(raw)
            if math.isfinite(raw_float):
                return _from_bytes(struct.pack(fmt, raw_float), order)  # OverflowError past float32
            raw_shown = ""
    except OverflowError:
        raw_shown = ""
    span = f"{lo}..{hi}" if data_type in INTEGER_TYPES else f"{lo:.9g}..{hi:.9g}"
    if scale != 1 or offset != 0:
        ends = sorted((lo * scale + offset, hi * scale + offset))
        span += f", i.e. {ends[0]:.12g}..{ends[1]:.12g}"
    raise ValueError(f"{_shown(value)} is out of range for {data_type} ({raw_shown}accepted {span})")


_FLOAT32_MAX: float = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
#: the smallest and largest raw value a register of each numeric type holds
LIMITS: dict[str, tuple[float, float]] = {
    "float32": (-_FLOAT32_MAX, _FLOAT32_MAX),
    "float64": (-sys.float_info.max, sys.float_info.max),
}
for _t in INTEGER_TYPES:
    _bits = 8 * struct.calcsize(_FORMATS[_t][0])
    LIMITS[_t] = (0, 2**_bits - 1) if _t.startswith("u") else (-(2 ** (_bits - 1)), 2 ** (_bits - 1) - 1)


def _shown(value: float) -> str:
    """`value` for a message: a huge integer by its size, not its hundreds of digits."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    return repr(value)


def every_order(registers: Sequence[int], data_type: str) -> dict[str, object]:
    """Decode `registers` in each word order (for commissioning: which order gives sane values?)."""
    out: dict[str, object] = {}
    for order in ORDERS:
        try:
            out[order] = decode_raw(registers, data_type, order)
        except DecodeError as exc:
            out[order] = f"error: {exc}"
    return out
