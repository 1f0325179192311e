"""BTHome v2 advertisements (service data on UUID 0xFCD2): the object catalogue and the decoder.

A packet is one device-info byte (bit 0 encrypted, bit 2 trigger-based, bits 5-7 the version,
which must be 2) and then `[object id][value]` pairs, little-endian (ids should ascend; the decoder does not insist). An
object's length is known only from the catalogue, so an id this catalogue does not know ends the
packet: what came before it is kept, the rest is counted as skipped (`Decoded.unknown`).

Values are scaled to engineering units here; the driver maps object names to points. An object
that appears more than once in a packet (two temperature probes) is named `temperature`,
`temperature_2`, ... in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

SERVICE_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
SERVICE_UUID_LE = bytes.fromhex("d2fc")  # 0xFCD2 as it is sent (little-endian), part of the nonce
PACKET_ID = 0x00


class ObjectType(NamedTuple):
    name: str
    size: int  # bytes
    signed: bool
    scale: float  # value = raw x scale
    unit: str
    binary: bool = False  # a 0/1 state (door open, motion)


def _sensor(name: str, size: int, scale: float = 1.0, unit: str = "", signed: bool = False) -> ObjectType:
    return ObjectType(name, size, signed, scale, unit)


def _binary(name: str) -> ObjectType:
    return ObjectType(name, 1, False, 1.0, "", binary=True)


#: object id -> how to read it (bthome.io/format). Two ids may name the same quantity at another
#: resolution (0x02 and 0x45 are both temperature in degC); they share the point name.
OBJECTS: dict[int, ObjectType] = {
    0x00: _sensor("packet_id", 1),
    0x01: _sensor("battery", 1, unit="%"),
    0x02: _sensor("temperature", 2, 0.01, "°C", signed=True),
    0x03: _sensor("humidity", 2, 0.01, "%"),
    0x04: _sensor("pressure", 3, 0.01, "hPa"),
    0x05: _sensor("illuminance", 3, 0.01, "lx"),
    0x06: _sensor("mass_kg", 2, 0.01, "kg"),
    0x07: _sensor("mass_lb", 2, 0.01, "lb"),
    0x08: _sensor("dewpoint", 2, 0.01, "°C", signed=True),
    0x09: _sensor("count", 1),
    0x0A: _sensor("energy", 3, 0.001, "kWh"),
    0x0B: _sensor("power", 3, 0.01, "W"),
    0x0C: _sensor("voltage", 2, 0.001, "V"),
    0x0D: _sensor("pm2_5", 2, unit="µg/m³"),
    0x0E: _sensor("pm10", 2, unit="µg/m³"),
    0x0F: _binary("generic"),
    0x10: _binary("power_on"),
    0x11: _binary("opening"),
    0x12: _sensor("co2", 2, unit="ppm"),
    0x13: _sensor("tvoc", 2, unit="µg/m³"),
    0x14: _sensor("moisture", 2, 0.01, "%"),
    0x15: _binary("battery_low"),
    0x16: _binary("battery_charging"),
    0x17: _binary("carbon_monoxide"),
    0x18: _binary("cold"),
    0x19: _binary("connectivity"),
    0x1A: _binary("door"),
    0x1B: _binary("garage_door"),
    0x1C: _binary("gas_detected"),
    0x1D: _binary("heat"),
    0x1E: _binary("light"),
    0x1F: _binary("lock"),
    0x20: _binary("moisture_detected"),
    0x21: _binary("motion"),
    0x22: _binary("moving"),
    0x23: _binary("occupancy"),
    0x24: _binary("plug"),
    0x25: _binary("presence"),
    0x26: _binary("problem"),
    0x27: _binary("running"),
    0x28: _binary("safety"),
    0x29: _binary("smoke"),
    0x2A: _binary("sound"),
    0x2B: _binary("tamper"),
    0x2C: _binary("vibration"),
    0x2D: _binary("window"),
    0x2E: _sensor("humidity", 1, unit="%"),
    0x2F: _sensor("moisture", 1, unit="%"),
    0x3A: _sensor("button", 1),
    0x3D: _sensor("count", 2),
    0x3E: _sensor("count", 4),
    0x3F: _sensor("rotation", 2, 0.1, "°", signed=True),
    0x40: _sensor("distance_mm", 2, unit="mm"),
    0x41: _sensor("distance_m", 2, 0.1, "m"),
    0x42: _sensor("duration", 3, 0.001, "s"),
    0x43: _sensor("current", 2, 0.001, "A"),
    0x44: _sensor("speed", 2, 0.01, "m/s"),
    0x45: _sensor("temperature", 2, 0.1, "°C", signed=True),
    0x46: _sensor("uv_index", 1, 0.1),
    0x47: _sensor("volume_l", 2, 0.1, "L"),
    0x48: _sensor("volume_ml", 2, unit="mL"),
    0x49: _sensor("volume_flow_rate", 2, 0.001, "m³/h"),
    0x4A: _sensor("voltage", 2, 0.1, "V"),
    0x4B: _sensor("gas", 3, 0.001, "m³"),
    0x4C: _sensor("gas", 4, 0.001, "m³"),
    0x4D: _sensor("energy", 4, 0.001, "kWh"),
    0x4E: _sensor("volume_l", 4, 0.001, "L"),
    0x4F: _sensor("water", 4, 0.001, "L"),
    0x50: _sensor("timestamp", 4, unit="s"),
    0x51: _sensor("acceleration", 2, 0.001, "m/s²"),
    0x52: _sensor("gyroscope", 2, 0.001, "°/s"),
}

#: object name -> (unit, binary) for configuration checks and point metadata
OBJECT_NAMES: dict[str, ObjectType] = {}
for _t in OBJECTS.values():
    OBJECT_NAMES.setdefault(_t.name, _t)

#: decimals worth keeping per scale (0.01 -> 2), so 23.45 is not 23.450000000000003
_DIGITS = {t.scale: max(0, len(f"{t.scale:g}".partition(".")[2])) for t in OBJECTS.values()}


class BTHomeError(ValueError):
    """The service data is not a BTHome v2 packet this decoder can read (says why and where)."""


class EncryptedPacket(BTHomeError):
    """An encrypted packet (device info bit 0) and no way to decrypt it here."""


@dataclass(slots=True)
class Decoded:
    """One packet: values by object name (`temperature`, `temperature_2`), and what was skipped."""

    values: dict[str, float | int | bool] = field(default_factory=dict)
    packet_id: int | None = None
    trigger: bool = False
    unknown: int | None = None  # the unknown object id that ended decoding, if one did
    counter: int | None = None  # an encrypted packet's counter (replay protection)


class NotAuthentic(BTHomeError):
    """An encrypted packet whose MIC does not match: a wrong bind key, or a forged packet."""


def decode(data: bytes, key: bytes | None = None, mac: str = "") -> Decoded:
    """Decode one BTHome v2 service-data payload; raises BTHomeError for garbage.

    An encrypted packet (device info bit 0) needs the device's 16-byte bind `key` and its `mac`
    (AES-CCM, 4-byte MIC; nonce = MAC + service UUID + device info + 4-byte counter); its counter
    is returned as `Decoded.counter` so the caller can refuse replays.
    """
    if not data:
        raise BTHomeError("empty service data")
    info = data[0]
    version = info >> 5
    if version != 2:
        raise BTHomeError(f"device info byte 0x{info:02x}: BTHome version {version}, expected 2")
    out = Decoded(trigger=bool(info & 0x04))
    if not info & 0x01:
        return decode_objects(data, 1, out)
    if key is None:
        raise EncryptedPacket("encrypted BTHome packet")
    if len(data) < 1 + 1 + 8:
        raise BTHomeError(f"encrypted packet of {len(data)} bytes: too short for data, counter and MIC")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    counter = data[-8:-4]
    try:
        plain = AESCCM(key, tag_length=4).decrypt(
            _nonce(mac, info, counter), bytes(data[1:-8]) + bytes(data[-4:]), None
        )
    except InvalidTag:
        raise NotAuthentic("encrypted packet does not authenticate (wrong bind key?)") from None
    out.counter = int.from_bytes(counter, "little")
    return decode_objects(plain, 0, out)


def _nonce(mac: str, info: int, counter: bytes) -> bytes:
    return bytes.fromhex(mac.replace(":", "")) + SERVICE_UUID_LE + bytes([info]) + counter


def encrypt(plain_objects: bytes, key: bytes, mac: str, counter: int, info: int = 0x41) -> bytes:
    """An encrypted BTHome payload of `plain_objects` (the `[id][value]` bytes): for tests and the
    simulator; real sensors encrypt on the device."""
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    ctr = counter.to_bytes(4, "little")
    sealed = AESCCM(key, tag_length=4).encrypt(_nonce(mac, info, ctr), plain_objects, None)
    return bytes([info]) + sealed[:-4] + ctr + sealed[-4:]


def decode_objects(data: bytes, pos: int, out: Decoded) -> Decoded:
    """Read `[id][value]` pairs from data[pos:] into `out` (shared by plain and decrypted packets)."""
    values = out.values
    end = len(data)
    while pos < end:
        oid = data[pos]
        kind = OBJECTS.get(oid)
        if kind is None:
            out.unknown = oid
            break
        start = pos + 1
        pos = start + kind.size
        if pos > end:
            raise BTHomeError(
                f"object 0x{oid:02x} ({kind.name}) at byte {start - 1} needs {kind.size} bytes, "
                f"{end - start} left"
            )
        raw = int.from_bytes(data[start:pos], "little", signed=kind.signed)
        if oid == PACKET_ID:
            out.packet_id = raw
            continue
        value: float | int | bool
        if kind.binary:
            value = raw != 0
        elif kind.scale == 1.0:
            value = raw
        else:
            value = round(raw * kind.scale, _DIGITS[kind.scale])
        name = kind.name
        if name in values:
            n = 2
            while f"{name}_{n}" in values:
                n += 1
            name = f"{name}_{n}"
        values[name] = value
    return out


def encode(values: list[tuple[int, int]], *, packet_id: int | None = None, trigger: bool = False) -> bytes:
    """A plain BTHome v2 packet from (object id, raw integer) pairs (tests, benchmark, simulators)."""
    out = bytearray([0x40 | (0x04 if trigger else 0)])
    if packet_id is not None:
        out += bytes([PACKET_ID, packet_id & 0xFF])
    for oid, raw in sorted(values, key=lambda v: v[0]):
        kind = OBJECTS[oid]
        out.append(oid)
        out += int(raw).to_bytes(kind.size, "little", signed=kind.signed)
    return bytes(out)
