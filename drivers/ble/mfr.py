"""Manufacturer- and service-data layouts described in profile files: the schema, the loader, the decoder.

Vendors' sensors (RuuviTag, Xiaomi thermometers on the pvvx firmware, ...) put their readings at
fixed byte offsets of an advertisement's manufacturer-specific data (keyed by a Bluetooth SIG
company id) or of its service data (keyed by a service UUID). A layout says where, so adding a
model is adding a profile file (drivers/profiles/ble-*.yaml, its `advert:` section), not Python:

    advert:
      manufacturer: 0x0499          # or service: 181a (16-bit) / a full 128-bit UUID
      prefix: "05"                  # the payload must start with these bytes (hex)
      length: 24                    # ...and have exactly this many (or min_length:)
      packet_id: sequence           # a field whose repeat means the same packet again
      fields:
        - {name: temperature, offset: 1, type: s16be, scale: 0.005, unit: °C, invalid: -32768}
        - {name: battery_mv, offset: 13, type: u16be, shift: 5, width: 11, add: 1600, unit: mV}
        - {name: reed_switch, offset: 14, type: u8, bit: 0}

A value is `raw x scale + add`, where raw is the field's integer read at `offset` (bleak strips the
company id, so offset 0 is the first byte after it), then `(raw >> shift) & (2**width - 1)` when
`width` is given; `bit: n` is a one-bit flag (a bool); `invalid:` is the raw value the vendor
sends for "not available" (that field is left out, and named in `FieldValues.invalid`). `mac` and
`mac_le` read six bytes as an address (`mac_le`: least significant byte first).

Decoding never raises on bytes: a payload that is too short, or whose prefix or length is not the
layout's, is a `NotDecoded` with the counter the driver adds it to and a reason a person can read.
A layout that is wrong is refused when it is loaded, each problem located (file, line, key).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from edge.config import load_profile, validation_problems
from edge.model import PointType, Value
from edge.validation import ConfigError, PointName, Strict
from edge.yamlpos import Positions, Problem, YamlError

#: name -> (bytes, signed, byte order); the accepted `type:` values
TYPES: dict[str, tuple[int, bool, Literal["little", "big"]]] = {
    "u8": (1, False, "little"),
    "s8": (1, True, "little"),
    "u16le": (2, False, "little"),
    "s16le": (2, True, "little"),
    "u16be": (2, False, "big"),
    "s16be": (2, True, "big"),
    "u24le": (3, False, "little"),
    "s24le": (3, True, "little"),
    "u24be": (3, False, "big"),
    "s24be": (3, True, "big"),
    "u32le": (4, False, "little"),
    "s32le": (4, True, "little"),
    "u32be": (4, False, "big"),
    "s32be": (4, True, "big"),
    "mac": (6, False, "big"),
    "mac_le": (6, False, "little"),
}
FieldType = Literal[
    "u8", "s8", "u16le", "s16le", "u16be", "s16be", "u24le", "s24le", "u24be", "s24be",
    "u32le", "s32le", "u32be", "s32be", "mac", "mac_le",
]  # fmt: skip
MAC_TYPES = ("mac", "mac_le")
BASE_UUID = "-0000-1000-8000-00805f9b34fb"  # a 16-bit UUID is 0000xxxx + this (bleak's keys)
#: counters a NotDecoded adds to (the driver's COUNTERS must have them)
Counter = Literal["garbage", "encrypted", "unsupported"]


@dataclass(frozen=True, slots=True)
class NotDecoded:
    """An advertisement that claims a format but gives no values: `counter` says which driver
    counter it adds to, `reason` what was wrong (for the device's degraded state)."""

    counter: Counter
    reason: str


@dataclass(slots=True)
class FieldValues:
    """One payload decoded by a layout: values by field name, and the fields that said "not available"."""

    values: dict[str, Value] = field(default_factory=dict)
    invalid: tuple[str, ...] = ()
    packet_id: int | None = None


# ---------------------------------------------------------------- the schema
@dataclass(frozen=True, slots=True)
class _Reader:
    name: str
    start: int
    end: int
    signed: bool
    order: Literal["little", "big"]
    shift: int
    mask: int | None
    flag: bool
    mac: bool
    scale: float
    add: float
    digits: int
    plain: bool  # scale 1, add 0: the raw integer is the value
    invalid: int | None


def full_uuid(text: str) -> str:
    """A service UUID as bleak's service_data keys it: `181a`, `0x181A` -> 0000181a-0000-1000-8000-00805f9b34fb."""
    t = str(text).strip().lower().removeprefix("0x")
    if len(t) == 4 and all(c in "0123456789abcdef" for c in t):
        return f"0000{t}{BASE_UUID}"
    parts = t.split("-")
    if [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in "0123456789abcdef" for c in "".join(parts)):
        return t
    raise ValueError(
        f"invalid service UUID {text!r}; expected 4 hex digits (181a) or a full UUID "
        "(0000181a-0000-1000-8000-00805f9b34fb)"
    )


class FieldSpec(Strict):
    """One value at a byte offset of the payload."""

    name: PointName
    offset: int = Field(ge=0, le=254)
    type: FieldType = "u8"
    shift: int = Field(0, ge=0, le=31)  # bits to drop on the right before `width`
    width: int | None = Field(None, ge=1, le=32)  # bits kept (default: all)
    bit: int | None = Field(None, ge=0, le=31)  # a one-bit flag: shift=bit, width=1, a bool
    scale: float = 1.0
    add: float = 0.0
    unit: str = ""
    invalid: int | None = None  # the raw value meaning "not available"
    description: str = ""

    @field_validator("scale", "add")
    @classmethod
    def _finite(cls, v: float, info: ValidationInfo) -> float:
        # a scale of 0 would read every sensor as 0; NaN and inf would reach the journal
        if not math.isfinite(v) or (v == 0 and info.field_name == "scale"):
            other = " other than 0" if info.field_name == "scale" else ""
            raise ValueError(f"{info.field_name} must be a finite number{other} (got {v!r})")
        return v

    @property
    def size(self) -> int:
        return TYPES[self.type][0]

    def point_type(self) -> PointType:
        """bool for a bit, str for an address, int when scale and add keep whole numbers whole."""
        if self.bit is not None:
            return PointType.BOOL
        if self.type in MAC_TYPES:
            return PointType.STR
        return PointType.INT if self.scale.is_integer() and self.add.is_integer() else PointType.FLOAT

    def digits(self) -> int:
        """Decimals worth keeping (scale 0.005 -> 3), so 24.3 is not 24.300000000000001."""
        return max(len(f"{x:.10g}".partition(".")[2]) for x in (self.scale, self.add))


class AdvertLayout(Strict):
    """Where a sensor model's values sit in its advertisements (a profile's `advert:` section)."""

    manufacturer: int | None = Field(None, ge=0, le=0xFFFF)  # Bluetooth SIG company id
    service: str | None = None  # service-data UUID
    prefix: str = ""  # hex bytes the payload starts with
    length: int | None = Field(None, ge=1, le=255)  # exact payload length
    min_length: int | None = Field(None, ge=1, le=255)
    packet_id: str | None = None  # a field whose repeat means the same packet again
    fields: list[FieldSpec] = Field(min_length=1)
    description: str = ""
    _readers: tuple[_Reader, ...] | None = PrivateAttr(None)

    @field_validator("service")
    @classmethod
    def _service(cls, v: str | None) -> str | None:
        return None if v is None else full_uuid(v)

    @field_validator("prefix", mode="before")
    @classmethod
    def _prefix(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.replace(" ", "").lower().removeprefix("0x")
            try:
                bytes.fromhex(text)
            except ValueError:
                raise ValueError(
                    f'invalid prefix {v!r}; expected hex bytes such as "05" or "02 15"'
                ) from None
            return text
        return v

    @property
    def prefix_bytes(self) -> bytes:
        return bytes.fromhex(self.prefix)

    @property
    def source(self) -> str:
        """What the layout reads, for messages: `manufacturer data 0x0499` / `service data 0000181a-...`."""
        if self.manufacturer is not None:
            return f"manufacturer data 0x{self.manufacturer:04X}"
        return f"service data {self.service}"


def layout_problems(
    layout: AdvertLayout, pos: Positions, at: tuple[str | int, ...] = ("advert",)
) -> list[Problem]:
    """What a valid-looking layout still gets wrong, each located: a field past the payload's
    end, bits past the field's width, a duplicate name, an `invalid` the field cannot hold."""
    out: list[Problem] = []
    if (layout.manufacturer is None) == (layout.service is None):
        out.append(pos.problem(at, "give exactly one of manufacturer: (a company id) or service: (a UUID)"))
    if layout.length is not None and layout.min_length is not None:
        out.append(pos.problem((*at, "min_length"), "give length: or min_length:, not both"))
    end = layout.length or layout.min_length
    if end is not None and len(layout.prefix_bytes) > end:
        out.append(
            pos.problem(
                (*at, "prefix"),
                f"prefix is {len(layout.prefix_bytes)} bytes, longer than the payload ({end})",
            )
        )
    seen: set[str] = set()
    for i, f in enumerate(layout.fields):
        where = (*at, "fields", i)
        if f.name in seen:
            out.append(pos.problem((*where, "name"), f"duplicate field name {f.name!r}"))
        seen.add(f.name)
        if f.name in RESERVED:
            out.append(
                pos.problem(
                    (*where, "name"),
                    f"{f.name!r} is a point every advertisement has; name the field otherwise",
                )
            )
        if end is not None and f.offset + f.size > end:
            out.append(
                pos.problem(
                    (*where, "offset"),
                    f"field {f.name!r} ({f.type} at offset {f.offset}) ends at byte {f.offset + f.size}, "
                    f"past the payload's {end} bytes",
                )
            )
        bits = f.size * 8
        if f.type in MAC_TYPES:
            extra = [
                k for k in ("shift", "width", "bit", "scale", "add", "invalid") if k in f.model_fields_set
            ]
            if extra:
                out.append(
                    pos.problem(
                        (*where, extra[0]), f"a {f.type} field is an address: {extra[0]} does not apply"
                    )
                )
            continue
        if f.bit is not None and ({"shift", "width"} & f.model_fields_set):
            out.append(pos.problem((*where, "bit"), "bit: n is shift: n, width: 1; give one or the other"))
        low, width = (f.bit, 1) if f.bit is not None else (f.shift, f.width or bits - f.shift)
        if low + width > bits:
            key = "bit" if f.bit is not None else ("width" if f.width else "shift")
            out.append(
                pos.problem(
                    (*where, key), f"bits {low}..{low + width - 1} are past the {bits} bits of {f.type}"
                )
            )
        if f.invalid is not None:
            signed = TYPES[f.type][1] and f.width is None and f.bit is None and f.shift == 0
            lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
            if not lo <= f.invalid <= hi:
                out.append(
                    pos.problem(
                        (*where, "invalid"),
                        f"invalid: {f.invalid} is outside what the field holds ({lo}..{hi})",
                    )
                )
    if layout.packet_id is not None:
        pf = next((f for f in layout.fields if f.name == layout.packet_id), None)
        if pf is None:
            out.append(
                pos.problem(
                    (*at, "packet_id"), f"packet_id names no field; fields: {', '.join(sorted(seen))}"
                )
            )
        elif pf.point_type() != PointType.INT:
            out.append(
                pos.problem(
                    (*at, "packet_id"),
                    f"packet_id must name an integer field ({pf.name!r} is {pf.point_type()})",
                )
            )
    return out


#: point names the driver gives every advertising device, so a layout cannot take them
RESERVED = frozenset({"present", "rssi"})


# ---------------------------------------------------------------- loading
def parse_layout(data: Any, pos: Positions, at: tuple[str | int, ...] = ("advert",)) -> AdvertLayout:
    """`data` (a profile's `advert:` mapping) as a layout; ConfigError with every located problem."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            [pos.problem(at, "advert: must be a mapping with manufacturer: or service: and fields:")]
        )
    try:
        layout = AdvertLayout.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, AdvertLayout, at, pos)) from None
    problems = layout_problems(layout, pos, at)
    if problems:
        raise ConfigError(problems)
    return layout


@functools.lru_cache(maxsize=64)
def _load_layout(name: str, profile_dir: Path | None) -> AdvertLayout:
    try:
        data, pos = load_profile(name, profile_dir)
    except YamlError as exc:
        raise ConfigError(exc.problems) from None
    if "advert" not in data:
        raise ConfigError(
            [pos.problem((), f"profile {name!r} has no advert: section (a manufacturer-data layout)")]
        )
    return parse_layout(data["advert"], pos)


def load_layout(name: str, profile_dir: Path | None = None) -> AdvertLayout:
    """The layout of profile `name` (drivers/profiles/NAME.yaml, its `advert:` section), loaded
    once per process. LookupError for an unknown profile, ConfigError for a wrong one."""
    return _load_layout(name, profile_dir)


# ---------------------------------------------------------------- decoding
def _compile(layout: AdvertLayout) -> tuple[_Reader, ...]:
    out = []
    for f in layout.fields:
        size, signed, order = TYPES[f.type]
        shift, width = (f.bit, 1) if f.bit is not None else (f.shift, f.width)
        bitwise = f.bit is not None or f.width is not None or f.shift
        out.append(
            _Reader(
                f.name,
                f.offset,
                f.offset + size,
                signed and not bitwise,
                order,
                shift,
                (1 << width) - 1 if width is not None else None,
                f.bit is not None,
                f.type in MAC_TYPES,
                f.scale,
                f.add,
                f.digits(),
                f.scale == 1 and f.add == 0,
                f.invalid,
            )
        )
    layout._readers = tuple(out)
    return layout._readers


def payload_of(
    layout: AdvertLayout, manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes]
) -> bytes | None:
    """The bytes the layout reads from one advertisement, or None when it carries none of them."""
    if layout.manufacturer is not None:
        return manufacturer_data.get(layout.manufacturer)
    assert layout.service is not None
    return service_data.get(layout.service)


def decode(layout: AdvertLayout, data: bytes) -> FieldValues | NotDecoded:
    """The layout's fields read from `data` (the payload after the company id, or the service
    data); a NotDecoded (counter `garbage`) for a payload of the wrong length or prefix."""
    n = len(data)
    if layout.length is not None and n != layout.length:
        return NotDecoded("garbage", f"{layout.source}: {n} bytes, the layout has {layout.length}")
    if layout.min_length is not None and n < layout.min_length:
        return NotDecoded(
            "garbage", f"{layout.source}: {n} bytes, the layout needs at least {layout.min_length}"
        )
    prefix = layout.prefix_bytes
    if data[: len(prefix)] != prefix:
        return NotDecoded(
            "garbage", f"{layout.source} starts {bytes(data[:8]).hex(' ')}, not the layout's {layout.prefix}"
        )
    values: dict[str, Value] = {}
    invalid: list[str] = []
    for r in layout._readers or _compile(layout):
        if r.end > n:
            return NotDecoded(
                "garbage", f"{layout.source}: {n} bytes, field {r.name!r} needs bytes {r.start}..{r.end - 1}"
            )
        chunk = data[r.start : r.end]
        if r.mac:
            raw_mac = chunk if r.order == "big" else chunk[::-1]
            if raw_mac == b"\xff" * 6:
                invalid.append(r.name)
                continue
            values[r.name] = bytes(raw_mac).hex(":").upper()
            continue
        raw = int.from_bytes(chunk, r.order, signed=r.signed)
        if r.mask is not None:
            raw = (raw >> r.shift) & r.mask
        elif r.shift:
            raw >>= r.shift
        if raw == r.invalid:
            invalid.append(r.name)
            continue
        if r.flag:
            values[r.name] = bool(raw)
        elif r.plain:
            values[r.name] = raw
        elif r.digits == 0:
            values[r.name] = int(raw * r.scale + r.add)
        else:
            values[r.name] = round(raw * r.scale + r.add, r.digits)
    packet_id = values.get(layout.packet_id) if layout.packet_id else None
    return FieldValues(values, tuple(invalid), packet_id if isinstance(packet_id, int) else None)


# ---------------------------------------------------------------- encoding (simulated sensors)
def encode(layout: AdvertLayout, values: Mapping[str, Value]) -> bytes:
    """The payload a sensor of this layout sends for `values` (the demo's simulated sensors, and
    tests): each field's raw value is `(value - add) / scale`, a bit field is merged into its
    bytes; a field left out is sent as its `invalid:` value (zero bits when it has none), an
    address left out as FF:FF:FF:FF:FF:FF. ValueError for a value the field cannot hold."""
    prefix = layout.prefix_bytes
    size = layout.length or max(
        layout.min_length or 0, len(prefix), *(f.offset + f.size for f in layout.fields)
    )
    buf = bytearray(size)
    buf[: len(prefix)] = prefix
    for f in layout.fields:
        width_bytes, signed, order = TYPES[f.type]
        end = f.offset + width_bytes
        value = values.get(f.name)
        if f.type in MAC_TYPES:
            mac = bytes.fromhex(str(value).replace(":", "")) if value is not None else b"\xff" * 6
            buf[f.offset : end] = mac if order == "big" else mac[::-1]
            continue
        if value is None:
            if f.invalid is None:
                continue
            raw = f.invalid
        elif f.bit is not None:
            raw = int(bool(value))
        else:
            raw = round((float(value) - f.add) / f.scale)
        if f.bit is not None or f.width is not None or f.shift:
            shift, width = (
                (f.bit, 1) if f.bit is not None else (f.shift, f.width or width_bytes * 8 - f.shift)
            )
            mask = (1 << width) - 1
            if not 0 <= raw <= mask:
                raise ValueError(f"field {f.name!r}: {value!r} is outside what its {width} bits hold")
            current = int.from_bytes(buf[f.offset : end], order)
            current = (current & ~(mask << shift)) | (raw << shift)
            buf[f.offset : end] = current.to_bytes(width_bytes, order)
            continue
        try:
            buf[f.offset : end] = raw.to_bytes(width_bytes, order, signed=signed)
        except OverflowError:
            raise ValueError(f"field {f.name!r}: {value!r} is outside what a {f.type} holds") from None
    return bytes(buf)
