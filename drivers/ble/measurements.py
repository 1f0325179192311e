"""The GATT health measurements: Blood Pressure (0x2A35), Weight (0x2A9D), Temperature (0x2A1C).

Each decoder turns one indication into the payload of an event in the shape the rule packs use
(`systolic_mmhg`, `weight_kg`, `temperature_c`, as the sim driver's generators). Units are
converted to the ones in the key names and the unit the device sent is kept beside them. A value
the device marks as missing (an IEEE 11073 NaN/NRes/INF, a weight of 0xFFFF) makes the whole
measurement `BadMeasurement` when it is the reading itself; an optional extra (pulse, mean
arterial pressure) that is missing is left out.
"""

from __future__ import annotations

from typing import Any

from drivers.ble.ieee11073 import SpecialValue, decode_float, decode_sfloat

MMHG_PER_KPA = 7.500616827
KG_PER_LB = 0.45359237
BODY_SITES = {
    1: "armpit",
    2: "body",
    3: "ear",
    4: "finger",
    5: "gastrointestinal",
    6: "mouth",
    7: "rectum",
    8: "toe",
    9: "tympanum",
}


class BadMeasurement(ValueError):
    """The indication carries no usable measurement (says why)."""


def need(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise BadMeasurement(f"{what}: {len(data)} bytes, expected at least {n}")


def _flags(data: bytes, fixed: int, extras: dict[int, int], what: str) -> int:
    """The flags byte of a measurement of `fixed` bytes followed by optional fields (flag bit ->
    size in bytes); BadMeasurement when `data` is shorter than its flags say."""
    need(data, fixed, what)
    flags = data[0]
    size = fixed + sum(n for bit, n in extras.items() if flags & bit)
    need(data, size, f"{what} with flags 0x{flags:02x}")
    return flags


def _measured_at(payload: dict[str, Any], data: bytes, flags: int, pos: int) -> int:
    """Adds the optional timestamp (flag 0x02, 7 bytes at `pos`) every measurement may carry;
    returns the position of the field after it."""
    if flags & 0x02:
        payload["measured_at"] = date_time(data, pos)
        return pos + 7
    return pos


def u16(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 2], "little")


def date_time(data: bytes, pos: int) -> str | None:
    """The 7-byte Date Time as ISO text in the device's local time; None when the device has no date."""
    year, month, day, hour, minute, second = u16(data, pos), *data[pos + 2 : pos + 7]
    if year == 0 or month == 0 or day == 0:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"


def _number(value: float) -> float | int:
    return int(value) if value == int(value) else value


def blood_pressure(data: bytes) -> dict[str, Any]:
    """Blood Pressure Measurement: systolic/diastolic/MAP (SFLOAT), then the optional fields."""
    flags = _flags(data, 7, {0x02: 7, 0x04: 2, 0x08: 1, 0x10: 2}, "blood pressure measurement")
    kpa = bool(flags & 0x01)
    factor = MMHG_PER_KPA if kpa else 1.0
    payload: dict[str, Any] = {}
    for key, pos in (("systolic_mmhg", 1), ("diastolic_mmhg", 3), ("mean_arterial_mmhg", 5)):
        try:
            value = decode_sfloat(u16(data, pos))
        except SpecialValue as exc:
            if key == "mean_arterial_mmhg":  # many cuffs do not compute it
                continue
            raise BadMeasurement(f"{key.removesuffix('_mmhg')}: {exc}") from None
        payload[key] = round(value * factor) if kpa else _number(value)
    if kpa:
        payload["unit_sent"] = "kPa"
    pos = _measured_at(payload, data, flags, 7)
    if flags & 0x04:
        try:
            payload["pulse_bpm"] = _number(decode_sfloat(u16(data, pos)))
        except SpecialValue:
            pass
        pos += 2
    if flags & 0x08:
        payload["user"] = data[pos]
        pos += 1
    if flags & 0x10:
        payload["status"] = u16(data, pos)
    return payload


def weight(data: bytes) -> dict[str, Any]:
    """Weight Measurement: u16 x 0.005 kg (SI) or x 0.01 lb (imperial), then the optional fields."""
    flags = _flags(data, 3, {0x02: 7, 0x04: 1, 0x08: 4}, "weight measurement")
    imperial = bool(flags & 0x01)
    raw = u16(data, 1)
    if raw == 0xFFFF:
        raise BadMeasurement("weight: the scale reports a failed measurement (0xFFFF)")
    payload: dict[str, Any] = {
        "weight_kg": round(raw * 0.01 * KG_PER_LB, 2) if imperial else round(raw * 0.005, 3)
    }
    if imperial:
        payload["unit_sent"] = "lb"
    pos = _measured_at(payload, data, flags, 3)
    if flags & 0x04:
        payload["user"] = data[pos]
        pos += 1
    if flags & 0x08:
        payload["bmi"] = round(u16(data, pos) * 0.1, 1)
        height = u16(data, pos + 2)
        payload["height_m"] = round(height * 0.1 * 0.0254, 3) if imperial else round(height * 0.001, 3)
    return payload


def body_temperature(data: bytes) -> dict[str, Any]:
    """Temperature Measurement: a FLOAT in degC (or degF), then timestamp and the body site."""
    flags = _flags(data, 5, {0x02: 7, 0x04: 1}, "temperature measurement")
    fahrenheit = bool(flags & 0x01)
    try:
        value = decode_float(int.from_bytes(data[1:5], "little"))
    except SpecialValue as exc:
        raise BadMeasurement(f"temperature: {exc}") from None
    payload: dict[str, Any] = {"temperature_c": round((value - 32) * 5 / 9, 2) if fahrenheit else value}
    if fahrenheit:
        payload["unit_sent"] = "°F"
    pos = _measured_at(payload, data, flags, 5)
    if flags & 0x04:
        payload["body_site"] = BODY_SITES.get(data[pos], f"type {data[pos]}")
    return payload


#: service name (config) -> decoder of its measurement characteristic
DECODERS = {"blood_pressure": blood_pressure, "weight": weight, "temperature": body_temperature}
