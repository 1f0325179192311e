"""Beacons and vendor advertisements as points: iBeacon, Eddystone (UID, URL, TLM), profile layouts.

The decoders are pure and never raise on bytes. Each returns a typed frame, `None` when the
advertisement does not carry that format at all (another company's data, Apple's other message
types), or a `NotDecoded` when it claims the format but cannot be read: its `counter` is the
driver counter it adds to (`garbage`, `encrypted`, `unsupported`) and its `reason` says what was
wrong, for the device's degraded state. Nothing else is ever raised.

Integration contract (for drivers/ble/config.py and driver.py)
---------------------------------------------------------------
Site file, three more values of `mode:` beside `bthome` and `gatt`::

    - id: cart-7                      # an iBeacon whose MAC rotates: matched by its ids
      driver: ble
      mode: ibeacon
      beacon: {uuid: f7826da6-4fa2-4e98-8024-bc5b71e0893e, major: 1, minor: 7}
      stale_after: 2m                 # not heard this long: present goes false
    - id: door-3f-tag                 # an Eddystone beacon, by its address (UID, URL, TLM frames)
      driver: ble
      mode: eddystone
      address: C4:7C:8D:6A:01:02
    - id: hall-climate                # a vendor sensor: the profile's defaults say mode: advert
      profile: ble-ruuvi-rawv2
      address: CB:B8:33:4C:88:4F

`address` is required except for `ibeacon`/`eddystone` with `beacon:` ids (then the scanner hands
the device every advertisement no address claims). `mode: advert` takes its layout from the
device's `profile:` (`mfr.load_layout(device.profile)`).

Per device the driver builds one `AdvertWatch` (see `watch_for`), declares `watch.points()` as
its point metadata (name, type, unit, description, for `point_infos`; `points:` may select and
rename them by `object:` as in BTHome mode), and for each advertisement calls::

    heard = watch.read(device.address, adv.manufacturer_data, adv.service_data, adv.rssi, adv.local_name)

`None`: not this device's beacon; drop it. Otherwise `heard.values` maps point keys to values
(`present` is True and `rssi` set on every advertisement heard; the decoded fields when the
payload was readable); `heard.problem`, when set, is a `NotDecoded` to count and show (the
device is degraded, as with BTHome garbage); `heard.packet_id`, when set, is a layout's sequence
field: the same id twice in a row is the same packet re-reported by BlueZ, drop it. After
`stale_after` without an advertisement the driver emits `watch.absent()` (`present: false`, a
GOOD reading: absence is a fact) and marks the other points stale, as BTHome mode does.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from drivers.ble.mfr import AdvertLayout, FieldValues, NotDecoded, decode, payload_of
from edge.model import PointType, Value

__all__ = [
    "AdvertWatch",
    "EddystoneTLM",
    "EddystoneUID",
    "EddystoneURL",
    "Heard",
    "IBeacon",
    "NotDecoded",
    "PointSpec",
    "decode_eddystone",
    "decode_ibeacon",
]

APPLE = 0x004C
IBEACON_PREFIX = b"\x02\x15"  # type 0x02 (iBeacon), 0x15 = 21 bytes follow
IBEACON_LENGTH = 23
EDDYSTONE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"
FRAME_UID, FRAME_URL, FRAME_TLM, FRAME_EID = 0x00, 0x10, 0x20, 0x30
URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
_TLDS = (".com", ".org", ".edu", ".net", ".info", ".biz", ".gov")
#: expansion codes 0x00-0x06 (with the slash), then 0x07-0x0d (without)
URL_CODES: tuple[str, ...] = (*(t + "/" for t in _TLDS), *_TLDS)
PATH_LOSS_EXPONENT = 2.0  # free space; indoors is 2.5-4, so distance_m reads short there


@dataclass(frozen=True, slots=True)
class IBeacon:
    uuid: str  # lower case, with dashes
    major: int
    minor: int
    power: int  # measured RSSI at 1 m, dBm


@dataclass(frozen=True, slots=True)
class EddystoneUID:
    namespace: str  # 10 bytes, 20 hex digits
    instance: str  # 6 bytes, 12 hex digits
    tx_power: int  # calibrated at 0 m, dBm


@dataclass(frozen=True, slots=True)
class EddystoneURL:
    url: str
    tx_power: int


@dataclass(frozen=True, slots=True)
class EddystoneTLM:
    battery_mv: int | None  # None: not supported (USB-powered beacon)
    temperature: float | None  # °C; None: not supported (0x8000)
    adv_count: int  # advertisements sent since boot
    uptime: float  # seconds since boot (0.1 s resolution)


Eddystone = EddystoneUID | EddystoneURL | EddystoneTLM


# ---------------------------------------------------------------- decoders
def decode_ibeacon(manufacturer_data: Mapping[int, bytes]) -> IBeacon | NotDecoded | None:
    """The iBeacon in an advertisement's manufacturer data (Apple, 0x004C, type 0x02 length 0x15):
    proximity UUID, major, minor and the measured power at 1 m, all big-endian."""
    data = manufacturer_data.get(APPLE)
    if data is None or data[:1] != IBEACON_PREFIX[:1]:
        return None  # no Apple data, or one of Apple's other messages
    if data[:2] != IBEACON_PREFIX or len(data) != IBEACON_LENGTH:
        return NotDecoded(
            "garbage",
            f"iBeacon data must be 02 15 and 21 bytes ({IBEACON_LENGTH} in all); got {len(data)} bytes "
            f"starting {bytes(data[:4]).hex(' ')}",
        )
    return IBeacon(
        str(uuidlib.UUID(bytes=bytes(data[2:18]))),
        int.from_bytes(data[18:20], "big"),
        int.from_bytes(data[20:22], "big"),
        int.from_bytes(data[22:23], "big", signed=True),
    )


def decode_eddystone(service_data: Mapping[str, bytes]) -> Eddystone | NotDecoded | None:
    """The Eddystone frame in an advertisement's service data (UUID 0xFEAA): UID, URL or plain TLM.
    An encrypted TLM (version 1) is `encrypted`, an EID frame `unsupported`: neither is readable
    without the beacon's key."""
    data = service_data.get(EDDYSTONE_UUID)
    if data is None:
        return None
    if not data:
        return NotDecoded("garbage", "empty Eddystone service data")
    frame = data[0]
    if frame == FRAME_UID:
        if not 18 <= len(data) <= 20:
            return NotDecoded(
                "garbage", f"Eddystone-UID frame of {len(data)} bytes; it has 18 (20 with the reserved bytes)"
            )
        return EddystoneUID(bytes(data[2:12]).hex(), bytes(data[12:18]).hex(), _s8(data[1]))
    if frame == FRAME_TLM:
        return _tlm(data)
    if frame == FRAME_URL:
        return _url(data)
    if frame == FRAME_EID:
        return NotDecoded("unsupported", "Eddystone-EID frame: an ephemeral id only its owner's key resolves")
    return NotDecoded("unsupported", f"Eddystone frame type 0x{frame:02x} is none of UID, URL, TLM")


def _s8(b: int) -> int:
    return b - 256 if b > 127 else b


def _tlm(data: bytes) -> EddystoneTLM | NotDecoded:
    version = data[1] if len(data) > 1 else None
    if version == 1:
        return NotDecoded(
            "encrypted", "encrypted Eddystone-TLM frame (version 1): not decodable without the beacon's key"
        )
    if version != 0:
        return NotDecoded("garbage", f"Eddystone-TLM version {version}; only version 0 (plain) is defined")
    if len(data) != 14:
        return NotDecoded("garbage", f"Eddystone-TLM frame of {len(data)} bytes; it has 14")
    vbatt = int.from_bytes(data[2:4], "big")
    temp = int.from_bytes(data[4:6], "big", signed=True)
    return EddystoneTLM(
        vbatt or None,
        None if temp == -0x8000 else round(temp / 256, 2),
        int.from_bytes(data[6:10], "big"),
        round(int.from_bytes(data[10:14], "big") / 10, 1),
    )


def _url(data: bytes) -> EddystoneURL | NotDecoded:
    if not 3 <= len(data) <= 20:
        return NotDecoded("garbage", f"Eddystone-URL frame of {len(data)} bytes; it has 3 to 20")
    if data[2] >= len(URL_SCHEMES):
        return NotDecoded("garbage", f"Eddystone-URL scheme 0x{data[2]:02x}; defined are 0x00-0x03")
    parts = [URL_SCHEMES[data[2]]]
    for b in data[3:]:
        if b < len(URL_CODES):
            parts.append(URL_CODES[b])
        elif 0x20 < b < 0x7F:
            parts.append(chr(b))
        else:
            return NotDecoded("garbage", f"Eddystone-URL byte 0x{b:02x} is reserved")
    return EddystoneURL("".join(parts), _s8(data[1]))


# ---------------------------------------------------------------- encoders (simulated beacons, tests)
def encode_ibeacon(beacon: IBeacon) -> dict[int, bytes]:
    """The manufacturer data an iBeacon sends (the demo's simulated beacon)."""
    body = uuidlib.UUID(beacon.uuid).bytes + beacon.major.to_bytes(2, "big") + beacon.minor.to_bytes(2, "big")
    return {APPLE: IBEACON_PREFIX + body + beacon.power.to_bytes(1, "big", signed=True)}


def encode_eddystone(frame: EddystoneUID | EddystoneTLM) -> dict[str, bytes]:
    """The service data of an Eddystone UID or plain TLM frame."""
    if isinstance(frame, EddystoneUID):
        body = bytes([FRAME_UID]) + frame.tx_power.to_bytes(1, "big", signed=True)
        body += bytes.fromhex(frame.namespace) + bytes.fromhex(frame.instance) + b"\x00\x00"
    else:
        temp = -0x8000 if frame.temperature is None else round(frame.temperature * 256)
        body = (
            bytes([FRAME_TLM, 0])
            + (frame.battery_mv or 0).to_bytes(2, "big")
            + temp.to_bytes(2, "big", signed=True)
        )
        body += frame.adv_count.to_bytes(4, "big") + round(frame.uptime * 10).to_bytes(4, "big")
    return {EDDYSTONE_UUID: body}


# ---------------------------------------------------------------- advertisements -> points
Mode = Literal["ibeacon", "eddystone", "advert"]
MODES: tuple[Mode, ...] = ("ibeacon", "eddystone", "advert")


@dataclass(frozen=True, slots=True)
class PointSpec:
    """What the driver declares for one point key (PointInfo's name, type, unit, description)."""

    name: str
    type: PointType
    unit: str = ""
    description: str = ""


PRESENCE = (
    PointSpec("present", PointType.BOOL, "", "heard within stale_after"),
    PointSpec("rssi", PointType.INT, "dBm", "signal strength of the latest advertisement"),
)
IBEACON_POINTS = (
    *PRESENCE,
    PointSpec("major", PointType.INT, "", "iBeacon major"),
    PointSpec("minor", PointType.INT, "", "iBeacon minor"),
    PointSpec("tx_power", PointType.INT, "dBm", "measured power at 1 m, as the beacon states it"),
    PointSpec("distance_m", PointType.FLOAT, "m", "rough distance from rssi and the measured power"),
)
EDDYSTONE_POINTS = (
    *PRESENCE,
    PointSpec("namespace", PointType.STR, "", "Eddystone-UID namespace (20 hex digits)"),
    PointSpec("instance", PointType.STR, "", "Eddystone-UID instance (12 hex digits)"),
    PointSpec("url", PointType.STR, "", "Eddystone-URL"),
    PointSpec("tx_power", PointType.INT, "dBm", "calibrated power at 0 m"),
    PointSpec("distance_m", PointType.FLOAT, "m", "rough distance from rssi and the calibrated power"),
    PointSpec("battery_mv", PointType.INT, "mV", "Eddystone-TLM battery voltage"),
    PointSpec("temperature", PointType.FLOAT, "°C", "Eddystone-TLM beacon temperature"),
    PointSpec("adv_count", PointType.INT, "", "advertisements sent since the beacon booted"),
    PointSpec("uptime", PointType.FLOAT, "s", "time since the beacon booted"),
)
ONE_METRE_LOSS = 41  # dB: Eddystone's tx power is at 0 m; iBeacon's at 1 m


def distance_m(power_1m: int, rssi: int | None) -> float | None:
    """Log-distance path loss: a rough estimate (walls, bodies and orientation move it by metres)."""
    if rssi is None or rssi >= 0:
        return None
    return round(10 ** ((power_1m - rssi) / (10 * PATH_LOSS_EXPONENT)), 1)


def point_specs(mode: Mode, layout: AdvertLayout | None = None) -> list[PointSpec]:
    """The points a device of `mode` reports (mode advert: those of its layout), for the site-file
    checks made before the device's watch exists."""
    if mode == "ibeacon":
        return list(IBEACON_POINTS)
    if mode == "eddystone":
        return list(EDDYSTONE_POINTS)
    if layout is None:
        raise ValueError("mode advert needs a layout (the device's profile)")
    return [*PRESENCE, *(PointSpec(f.name, f.point_type(), f.unit, f.description) for f in layout.fields)]


@dataclass(slots=True)
class Heard:
    """One advertisement of a watched device: point values, and what could not be read."""

    values: dict[str, Value] = field(default_factory=dict)
    problem: NotDecoded | None = None
    packet_id: int | None = None


class AdvertWatch:
    """What one device entry listens for, and how its advertisements become point values.

    Bound to an address (the scanner hands it only that address's advertisements), every
    advertisement means `present`; bound to beacon ids instead (`uuid`/`major`/`minor`, or
    `namespace`/`instance`), only the advertisements carrying those ids count, and an Eddystone
    TLM or URL frame counts when it comes from the address that last sent the matching UID frame
    (the specification associates them by address)."""

    def __init__(
        self,
        mode: Mode,
        *,
        address: str | None = None,
        uuid: str | None = None,
        major: int | None = None,
        minor: int | None = None,
        namespace: str | None = None,
        instance: str | None = None,
        layout: AdvertLayout | None = None,
    ) -> None:
        if mode == "advert" and (layout is None or address is None):
            raise ValueError("mode advert needs a layout (the device's profile) and an address")
        if address is None and not (uuid or namespace):
            raise ValueError(f"mode {mode} needs an address or beacon ids to match")
        self.mode = mode
        self.address = address.upper() if address else None
        self.uuid = str(uuidlib.UUID(uuid)) if uuid else None
        self.major, self.minor = major, minor
        self.namespace = namespace.lower() if namespace else None
        self.instance = instance.lower() if instance else None
        self.layout = layout
        self.uid_address: str | None = None  # who last sent our Eddystone-UID (for its TLM frames)

    def points(self) -> list[PointSpec]:
        """Every point key `read` can report, with its metadata."""
        return point_specs(self.mode, self.layout)

    def absent(self) -> dict[str, Value]:
        """The values to report once stale_after has passed without an advertisement."""
        return {"present": False}

    def read(
        self,
        address: str,
        manufacturer_data: Mapping[int, bytes],
        service_data: Mapping[str, bytes],
        rssi: int | None,
        local_name: str | None = None,
    ) -> Heard | None:
        """Point values from one advertisement (bleak's AdvertisementData fields), or None when
        it is not this device's. Never raises on what the advertisement contains."""
        bound = self.address is not None and address.upper() == self.address
        if self.mode == "ibeacon":
            return self._ibeacon(bound, manufacturer_data, rssi)
        if self.mode == "eddystone":
            return self._eddystone(bound, address.upper(), service_data, rssi)
        if not bound:
            return None
        assert self.layout is not None
        heard = Heard(self._presence(rssi))
        data = payload_of(self.layout, manufacturer_data, service_data)
        if data is not None:
            result = decode(self.layout, data)
            if isinstance(result, FieldValues):
                heard.values.update(result.values)
                heard.packet_id = result.packet_id
            else:
                heard.problem = result
        return heard

    def _presence(self, rssi: int | None) -> dict[str, Value]:
        return {"present": True, "rssi": rssi} if rssi is not None else {"present": True}

    def _ibeacon(self, bound: bool, manufacturer_data: Mapping[int, bytes], rssi: int | None) -> Heard | None:
        frame = decode_ibeacon(manufacturer_data)
        if isinstance(frame, IBeacon):
            if (
                (self.uuid is not None and frame.uuid != self.uuid)
                or (self.major is not None and frame.major != self.major)
                or (self.minor is not None and frame.minor != self.minor)
            ):
                return None
            values = self._presence(rssi)
            values.update(major=frame.major, minor=frame.minor, tx_power=frame.power)
            dist = distance_m(frame.power, rssi)
            if dist is not None:
                values["distance_m"] = dist
            return Heard(values)
        if not bound:
            return None  # a stranger's garbage is not ours to count
        return Heard(self._presence(rssi), problem=frame)

    def _eddystone(
        self, bound: bool, address: str, service_data: Mapping[str, bytes], rssi: int | None
    ) -> Heard | None:
        frame = decode_eddystone(service_data)
        if self.namespace is not None and not bound:
            if isinstance(frame, EddystoneUID):
                if frame.namespace != self.namespace or (
                    self.instance is not None and frame.instance != self.instance
                ):
                    return None
                self.uid_address = address
            elif address != self.uid_address:
                return None
        elif not bound:
            return None
        heard = Heard(self._presence(rssi))
        v = heard.values
        if isinstance(frame, EddystoneUID):
            v.update(namespace=frame.namespace, instance=frame.instance, tx_power=frame.tx_power)
        elif isinstance(frame, EddystoneURL):
            v.update(url=frame.url, tx_power=frame.tx_power)
        elif isinstance(frame, EddystoneTLM):
            v.update(adv_count=frame.adv_count, uptime=frame.uptime)
            if frame.battery_mv is not None:
                v["battery_mv"] = frame.battery_mv
            if frame.temperature is not None:
                v["temperature"] = frame.temperature
        elif isinstance(frame, NotDecoded):
            heard.problem = frame
        if isinstance(frame, EddystoneUID | EddystoneURL):
            dist = distance_m(frame.tx_power - ONE_METRE_LOSS, rssi)
            if dist is not None:
                v["distance_m"] = dist
        return heard


def watch_for(
    mode: Mode,
    address: str | None,
    beacon: Mapping[str, str | int | None] | None = None,
    layout: AdvertLayout | None = None,
) -> AdvertWatch:
    """The watch of one device entry: its mode, address, `beacon:` ids and (mode advert) layout."""
    ids = dict(beacon or {})
    major, minor = ids.get("major"), ids.get("minor")
    return AdvertWatch(
        mode,
        address=address,
        uuid=str(ids["uuid"]) if ids.get("uuid") else None,
        major=int(major) if major is not None else None,
        minor=int(minor) if minor is not None else None,
        namespace=str(ids["namespace"]) if ids.get("namespace") else None,
        instance=str(ids["instance"]) if ids.get("instance") else None,
        layout=layout,
    )
