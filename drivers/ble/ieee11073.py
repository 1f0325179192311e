"""IEEE 11073-20601 numbers as the GATT health services send them: 16-bit SFLOAT, 32-bit FLOAT.

value = mantissa x 10^exponent (SFLOAT: 4-bit exponent, 12-bit mantissa; FLOAT: 8-bit exponent,
24-bit mantissa; both two's complement). A handful of mantissas are reserved: NaN, NRes (not at
this resolution), +INF, -INF and a reserved one. A reserved value is never a measurement, so the
decoder raises `SpecialValue` for it instead of returning a number that could end up in a record.

The encoder exists for the tests and the benchmark (round trips, devices that send a value).
"""

from __future__ import annotations

import math

SFLOAT_SPECIAL = {0x07FF: "NaN", 0x0800: "NRes", 0x07FE: "+INF", 0x0802: "-INF", 0x0801: "reserved"}
FLOAT_SPECIAL = {
    0x007FFFFF: "NaN",
    0x00800000: "NRes",
    0x007FFFFE: "+INF",
    0x00800002: "-INF",
    0x00800001: "reserved",
}


class SpecialValue(ValueError):
    """The device sent one of the reserved values (NaN, NRes, +INF, -INF): no measurement."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the device sent {name} instead of a number")
        self.name = name


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def _scaled(mantissa: int, exponent: int) -> float:
    # round to the decimal digits the exponent carries, so 36.6 is 36.6 and not 36.600000000000001
    return round(mantissa * 10.0**exponent, max(0, -exponent))


def decode_sfloat(raw: int) -> float:
    """A 16-bit SFLOAT (as an unsigned int) to a float; raises SpecialValue for reserved values."""
    mantissa = raw & 0x0FFF
    if mantissa in SFLOAT_SPECIAL and raw >> 12 == 0:
        raise SpecialValue(SFLOAT_SPECIAL[mantissa])
    return _scaled(_signed(mantissa, 12), _signed(raw >> 12, 4))


def decode_float(raw: int) -> float:
    """A 32-bit FLOAT (as an unsigned int) to a float; raises SpecialValue for reserved values."""
    mantissa = raw & 0x00FFFFFF
    if mantissa in FLOAT_SPECIAL and raw >> 24 == 0:
        raise SpecialValue(FLOAT_SPECIAL[mantissa])
    return _scaled(_signed(mantissa, 24), _signed(raw >> 24, 8))


def _encode(value: float, mbits: int, ebits: int, digits: int) -> int:
    if not math.isfinite(value):
        raise ValueError(f"{value} has no finite encoding; send the special value instead")
    emin, emax = -(1 << (ebits - 1)), (1 << (ebits - 1)) - 1
    mmax = (1 << (mbits - 1)) - 3  # the top mantissas are reserved for NaN/NRes/INF
    for exponent in range(-digits, emax + 1):
        if exponent < emin:
            continue
        mantissa = round(value / 10.0**exponent)
        if abs(mantissa) <= mmax and math.isclose(
            mantissa * 10.0**exponent, value, rel_tol=1e-9, abs_tol=10.0**exponent / 2
        ):
            return ((exponent & ((1 << ebits) - 1)) << mbits) | (mantissa & ((1 << mbits) - 1))
    raise ValueError(f"{value} does not fit in a {mbits + ebits}-bit IEEE 11073 number")


def encode_sfloat(value: float, digits: int = 3) -> int:
    """`value` as SFLOAT with at most `digits` decimals (the smallest exponent that holds it)."""
    return _encode(value, 12, 4, digits)


def encode_float(value: float, digits: int = 6) -> int:
    """`value` as FLOAT with at most `digits` decimals."""
    return _encode(value, 24, 8, digits)
