"""The Pulse Oximeter Profile: PLX Spot-Check Measurement (0x2A5E), PLX Continuous Measurement
(0x2A5F) and PLX Features (0x2A60).

SpO2 (%) and pulse rate (beats per minute) arrive as IEEE 11073 SFLOATs. An oximeter sends NaN or
NRes while the finger is not in place or the signal is still settling, and +INF/-INF beyond its
range: such a value is never a number in the payload. Its key is left out and the `special`
object names what the device sent instead (`{"spo2_pct": "NaN"}`), so a rule comparing
`payload.get('spo2_pct')` never sees a made-up value. A measurement with neither SpO2 nor pulse
rate is no measurement (`BadMeasurement`).
"""

from __future__ import annotations

from typing import Any

from drivers.ble.ieee11073 import SpecialValue, decode_sfloat
from drivers.ble.measurements import BadMeasurement, date_time, need, u16

#: Measurement Status bit -> name (bits 0-4 reserved)
MEASUREMENT_STATUS = {
    5: "measurement ongoing",
    6: "early estimated data",
    7: "validated data",
    8: "fully qualified data",
    9: "data from measurement storage",
    10: "data for demonstration",
    11: "data for testing",
    12: "calibration ongoing",
    13: "measurement unavailable",
    14: "questionable measurement detected",
    15: "invalid measurement detected",
}
#: Device and Sensor Status bit -> name (bits 16-23 reserved)
DEVICE_STATUS = {
    0: "extended display update ongoing",
    1: "equipment malfunction detected",
    2: "signal processing irregularity detected",
    3: "inadequate signal detected",
    4: "poor signal detected",
    5: "low perfusion detected",
    6: "erratic signal detected",
    7: "nonpulsatile signal detected",
    8: "questionable pulse detected",
    9: "signal analysis ongoing",
    10: "sensor interference detected",
    11: "sensor unconnected to user",
    12: "unknown sensor connected",
    13: "sensor displaced",
    14: "sensor malfunctioning",
    15: "sensor disconnected",
}
#: PLX Features' Supported Features bit -> name
FEATURES = {
    0: "measurement status",
    1: "device and sensor status",
    2: "measurement storage for spot-check",
    3: "timestamp for spot-check",
    4: "SpO2PR-Fast",
    5: "SpO2PR-Slow",
    6: "pulse amplitude index",
    7: "multiple bonds",
}


def _bits(value: int, names: dict[int, str]) -> list[str]:
    return [names.get(bit, f"bit {bit}") for bit in range(value.bit_length()) if value >> bit & 1]


def _value(payload: dict[str, Any], key: str, data: bytes, pos: int) -> None:
    """The SFLOAT at `pos` under `key`, or its special value's name under payload['special']."""
    try:
        value = decode_sfloat(u16(data, pos))
    except SpecialValue as exc:
        payload.setdefault("special", {})[key] = exc.name
        return
    payload[key] = int(value) if value == int(value) else value


def _statuses(payload: dict[str, Any], data: bytes, pos: int, measurement: bool, device: bool) -> int:
    if measurement:
        status = u16(data, pos) & 0xFFE0
        if status:
            payload["measurement_status"] = _bits(status, MEASUREMENT_STATUS)
        pos += 2
    if device:
        status = int.from_bytes(data[pos : pos + 3], "little") & 0xFFFF
        if status:
            payload["device_status"] = _bits(status, DEVICE_STATUS)
        pos += 3
    return pos


def _checked(payload: dict[str, Any], what: str) -> dict[str, Any]:
    if "spo2_pct" not in payload and "pulse_bpm" not in payload:
        sent = ", ".join(f"{k.split('_')[0]} {v}" for k, v in payload.get("special", {}).items())
        raise BadMeasurement(f"{what}: no SpO2 and no pulse rate (the device sent {sent})")
    return payload


def spot_check(data: bytes) -> dict[str, Any]:
    """PLX Spot-Check Measurement: flags, SpO2, pulse rate, then timestamp, measurement status,
    device and sensor status, pulse amplitude index as the flags say."""
    need(data, 5, "spot-check measurement")
    flags = data[0]
    size = 5 + (7 if flags & 0x01 else 0) + (2 if flags & 0x02 else 0) + (3 if flags & 0x04 else 0)
    size += 2 if flags & 0x08 else 0
    need(data, size, f"spot-check measurement with flags 0x{flags:02x}")
    payload: dict[str, Any] = {"mode": "spot_check"}
    _value(payload, "spo2_pct", data, 1)
    _value(payload, "pulse_bpm", data, 3)
    pos = 5
    if flags & 0x01:
        if not flags & 0x10:  # "device clock is not set": its timestamp means nothing
            stamp = date_time(data, pos)
            if stamp is not None:
                payload["measured_at"] = stamp
        pos += 7
    pos = _statuses(payload, data, pos, bool(flags & 0x02), bool(flags & 0x04))
    if flags & 0x08:
        _value(payload, "pulse_amplitude_index_pct", data, pos)
    return _checked(payload, "spot-check measurement")


def continuous(data: bytes) -> dict[str, Any]:
    """PLX Continuous Measurement: flags, SpO2PR-Normal, then SpO2PR-Fast, SpO2PR-Slow, statuses
    and pulse amplitude index as the flags say."""
    need(data, 5, "continuous measurement")
    flags = data[0]
    size = 5 + (4 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0) + (2 if flags & 0x04 else 0)
    size += (3 if flags & 0x08 else 0) + (2 if flags & 0x10 else 0)
    need(data, size, f"continuous measurement with flags 0x{flags:02x}")
    payload: dict[str, Any] = {"mode": "continuous"}
    _value(payload, "spo2_pct", data, 1)
    _value(payload, "pulse_bpm", data, 3)
    pos = 5
    for bit, speed in ((0x01, "fast"), (0x02, "slow")):
        if flags & bit:
            _value(payload, f"spo2_{speed}_pct", data, pos)
            _value(payload, f"pulse_{speed}_bpm", data, pos + 2)
            pos += 4
    pos = _statuses(payload, data, pos, bool(flags & 0x04), bool(flags & 0x08))
    if flags & 0x10:
        _value(payload, "pulse_amplitude_index_pct", data, pos)
    return _checked(payload, "continuous measurement")


def features(data: bytes) -> dict[str, Any]:
    """PLX Features: the supported features, and which status bits the device can report."""
    need(data, 2, "PLX features")
    supported = u16(data, 0)
    size = 2 + (2 if supported & 0x01 else 0) + (3 if supported & 0x02 else 0)
    need(data, size, f"PLX features 0x{supported:04x}")
    out: dict[str, Any] = {"features": _bits(supported, FEATURES)}
    pos = 2
    if supported & 0x01:
        out["measurement_status_support"] = _bits(u16(data, pos) & 0xFFE0, MEASUREMENT_STATUS)
        pos += 2
    if supported & 0x02:
        out["device_status_support"] = _bits(
            int.from_bytes(data[pos : pos + 3], "little") & 0xFFFF, DEVICE_STATUS
        )
    return out
