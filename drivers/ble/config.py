"""Site-file models of BLE devices: address, adapter, mode, the point map, GATT services, beacon ids.

Mistakes a technician can make are caught here and name the key: a MAC address in the wrong
shape, an object name BTHome does not have, a health service this driver does not speak, points
in GATT mode (whose data are events, not points), a beacon with neither address nor ids (or ids
of the other format), mode advert without a profile whose layout loads, a point its mode does
not give. In modes ibeacon, eddystone and advert a point's `object:` is checked against the
points the device's advertisements give (`_ADVERT_POINTS`, set while its entry is validated).
"""

from __future__ import annotations

import re
import uuid as uuidlib
from contextvars import ContextVar
from typing import Any, Literal, cast

from pydantic import Field, ModelWrapValidatorHandler, PrivateAttr, field_validator, model_validator

from drivers.ble import mfr
from drivers.ble.adverts import MODES, AdvertWatch, Mode, PointSpec, point_specs, watch_for
from drivers.ble.bthome import OBJECT_NAMES
from edge.config import PROFILE_DIR
from edge.driver import DeviceConfig, PointConfig
from edge.model import PointInfo, PointType, Privacy
from edge.units import Duration
from edge.validation import ConfigError, SitePath, Strict

MAC_RE = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}\Z")

#: GATT health service name -> (service UUID, measurement characteristic UUID, event kind)
SERVICES: dict[str, tuple[str, str, str]] = {
    "blood_pressure": (
        "00001810-0000-1000-8000-00805f9b34fb",
        "00002a35-0000-1000-8000-00805f9b34fb",
        "blood_pressure",
    ),
    "weight": (
        "0000181d-0000-1000-8000-00805f9b34fb",
        "00002a9d-0000-1000-8000-00805f9b34fb",
        "weight",
    ),
    "temperature": (
        "00001809-0000-1000-8000-00805f9b34fb",
        "00002a1c-0000-1000-8000-00805f9b34fb",
        "body_temperature",
    ),
    "glucose": (
        "00001808-0000-1000-8000-00805f9b34fb",
        "00002a18-0000-1000-8000-00805f9b34fb",
        "glucose",
    ),
    "pulse_oximeter": (
        "00001822-0000-1000-8000-00805f9b34fb",
        "00002a5e-0000-1000-8000-00805f9b34fb",
        "spo2",
    ),
}
GLUCOSE_CONTEXT = "00002a34-0000-1000-8000-00805f9b34fb"
RACP = "00002a52-0000-1000-8000-00805f9b34fb"
PLX_CONTINUOUS = "00002a5f-0000-1000-8000-00805f9b34fb"
PLX_FEATURES = "00002a60-0000-1000-8000-00805f9b34fb"
SERVICE_LIST = ", ".join(SERVICES)
RESIDENT_RE = re.compile(r"^[\w.@:-]{1,64}\Z")

#: not BTHome objects, but what every advertisement carries
EXTRA_OBJECTS = {"rssi": ("dBm", PointType.INT)}

#: mode ibeacon/eddystone/advert: the points the device's advertisements give, while its entry is
#: validated (a point's `object:` is checked against them instead of BTHome's objects)
_ADVERT_POINTS: ContextVar[dict[str, PointSpec] | None] = ContextVar("ble_advert_points", default=None)


def valid_mac(value: object) -> str:
    text = str(value).strip().upper().replace("-", ":")
    if not MAC_RE.match(text):
        raise ValueError(f"invalid BLE address {value!r}; expected six hex pairs such as A4:C1:38:0B:5E:01")
    return text


class BlePoint(PointConfig):
    """A point fed by one BTHome object (`object: distance_mm`), or by the signal strength (`rssi`)."""

    type: PointType | None = None  # type: ignore[assignment]  # default: from the object
    object: str = ""  # default: the point's name
    index: int = Field(1, ge=1, le=8)  # the n-th object of that name in a packet (two probes)
    _spec: PointSpec | None = PrivateAttr(None)  # advertisement modes: what the object is

    @field_validator("object")
    @classmethod
    def _object(cls, v: str) -> str:
        if v:
            check_object(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> BlePoint:
        if not self.object:  # `- {name: battery}` means the battery object
            try:
                self.object = check_object(self.name)
            except ValueError as exc:
                raise ValueError(f"point {self.name!r} needs object: ({exc})") from None
        advert = _ADVERT_POINTS.get()
        if advert is not None:
            self._spec = advert.get(self.object)
            if self.index != 1:
                raise ValueError(f"point {self.name!r}: index: is for BTHome objects")
            self.unit = self.unit or (self._spec.unit if self._spec else "")
            return self
        kind = OBJECT_NAMES.get(self.object)
        if not self.unit:
            self.unit = kind.unit if kind is not None else EXTRA_OBJECTS[self.object][0]
        return self

    @property
    def key(self) -> str:
        """The name this point has in a decoded packet (`temperature`, `temperature_2`)."""
        return self.object if self.index == 1 else f"{self.object}_{self.index}"

    def point_type(self) -> PointType:
        if self.type is not None:
            return self.type
        if self._spec is not None:
            return self._spec.type
        return object_type(self.object)


def check_object(name: str) -> str:
    """`name` if points can map it; otherwise a ValueError listing the objects they can."""
    advert = _ADVERT_POINTS.get()
    if advert is not None:  # {}: the profile is wrong, which the device's own check reports
        if advert and name not in advert:
            raise ValueError(
                f"unknown point {name!r} of this device's advertisements; known: {', '.join(advert)}"
            )
        return name
    if name == "packet_id":
        raise ValueError("packet_id de-duplicates packets; it is not a point")
    if name not in OBJECT_NAMES and name not in EXTRA_OBJECTS:
        known = ", ".join(sorted({*OBJECT_NAMES, *EXTRA_OBJECTS} - {"packet_id"}))
        raise ValueError(f"unknown BTHome object {name!r}; known objects: {known}")
    return name


def object_type(name: str) -> PointType:
    """The point type a BTHome object's values have."""
    if name in EXTRA_OBJECTS:
        return EXTRA_OBJECTS[name][1]
    kind = OBJECT_NAMES[base_object(name)]
    if kind.binary:
        return PointType.BOOL
    return PointType.INT if kind.scale == 1.0 else PointType.FLOAT


def base_object(key: str) -> str:
    """The object name of a decoded key: `temperature_2` -> `temperature` (`pm2_5` stays)."""
    if key in OBJECT_NAMES:
        return key
    base, _, n = key.rpartition("_")
    return base if n.isdigit() and base in OBJECT_NAMES else key


class BeaconIds(Strict):
    """Ids that match a beacon whose address rotates: iBeacon `uuid` (`major`, `minor`), or
    Eddystone `namespace` (`instance`)."""

    uuid: str | None = None
    major: int | None = Field(None, ge=0, le=0xFFFF)
    minor: int | None = Field(None, ge=0, le=0xFFFF)
    namespace: str | None = None
    instance: str | None = None

    @field_validator("uuid")
    @classmethod
    def _uuid(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(uuidlib.UUID(v))
        except ValueError:
            raise ValueError(
                f"invalid iBeacon uuid {v!r}; expected 32 hex digits such as f7826da6-4fa2-4e98-8024-bc5b71e0893e"
            ) from None

    @field_validator("namespace", "instance")
    @classmethod
    def _hex(cls, v: str | None, info: Any) -> str | None:
        digits = 20 if info.field_name == "namespace" else 12
        if v is not None and not re.fullmatch(f"[0-9a-fA-F]{{{digits}}}", v):
            raise ValueError(f"invalid Eddystone {info.field_name} {v!r}; expected {digits} hex digits")
        return None if v is None else v.lower()

    def key(self) -> str:
        """The ids as a person reads them (`uuid f7826da6-..., major 1`); equal ids, equal keys."""
        return ", ".join(f"{k} {v}" for k, v in self.model_dump(exclude_none=True).items())


def _advert_points(data: Any) -> dict[str, PointSpec] | None:
    """The points a device entry's advertisements give (None: not an advertisement mode)."""
    if not isinstance(data, dict) or data.get("mode") not in MODES:
        return None
    layout = None
    if data["mode"] == "advert":
        try:
            layout = mfr.load_layout(str(data.get("profile")))
        except (LookupError, ConfigError):
            return {}  # the device's own check says what is wrong with its profile
    return {p.name: p for p in point_specs(data["mode"], layout)}


def _layout_error(profile: str, exc: ConfigError) -> str:
    """Why mode advert cannot use `profile`: it has no layout, or the layout's located problems
    (paths from the project's root, as the profile files are named in the docs)."""
    with_layouts = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml") if "\nadvert:" in p.read_text())
    if any("has no advert: section" in p.message for p in exc.problems):
        return (
            f"mode advert reads its profile's advert: layout; profile {profile!r} has none "
            f"(profiles with one: {', '.join(with_layouts)})"
        )
    root = str(PROFILE_DIR.parent.parent) + "/"
    return f"profile {profile!r} has a wrong advert: layout:\n" + str(exc).replace(root, "")


class BleDevice(DeviceConfig):
    """A BLE device entry: a BTHome sensor that advertises, or a GATT health instrument."""

    driver: Literal["ble"] = "ble"
    address: str | None = None  # required, except for beacons matched by their `beacon:` ids
    adapter: str | None = None  # hci0; default: the first powered adapter
    mode: Literal["bthome", "gatt", "ibeacon", "eddystone", "advert"] = "bthome"
    beacon: BeaconIds | None = None  # ibeacon/eddystone: match by ids instead of the address
    #: no advertisement for this long: offline, points stale (BTHome); offline (GATT)
    stale_after: Duration = 600.0
    # encrypted BTHome: the sensor's bind key, by reference only (never in the site file)
    bind_key_env: str | None = None
    bind_key_file: SitePath | None = None
    #: advertisements read per second at most; the rest are dropped unread and counted
    #: (`over_rate`): a device, or another one sending with its address, cannot flood the journal.
    #: BLE's shortest advertising interval is 20 ms (50 a second, scan responses aside).
    max_adverts_per_second: int = Field(100, ge=1, le=100_000)
    points: list[BlePoint] = Field(default_factory=list)
    # GATT health instruments
    services: list[Literal["blood_pressure", "weight", "temperature", "glucose", "pulse_oximeter"]] = Field(
        default_factory=list
    )
    privacy: Privacy = Privacy.SENSITIVE  # of the measurement events
    #: the resident a personal instrument belongs to (a glucose meter lent to one resident): their
    #: id is the `resident` of every event, as the kiosk's own measurements carry it
    resident: str | None = None
    #: glucose: how long the meter may take to send its stored records and end with its response
    records_timeout: Duration = 60.0
    connect_timeout: Duration = 20.0
    reconnect_min: Duration = 2.0
    reconnect_max: Duration = 300.0

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, v: object) -> str | None:
        return None if v is None else valid_mac(v)

    def exclusive(self) -> list[tuple[str, str]]:
        if self.address is None:
            return [("beacon", self.beacon.key())] if self.beacon else []
        return [("address", self.address)]

    @model_validator(mode="wrap")
    @classmethod
    def _with_advert_points(cls, data: Any, handler: ModelWrapValidatorHandler[BleDevice]) -> BleDevice:
        token = _ADVERT_POINTS.set(_advert_points(data))
        try:
            return handler(data)
        finally:
            _ADVERT_POINTS.reset(token)

    @field_validator("adapter")
    @classmethod
    def _adapter(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^hci[0-9]+\Z", v):
            raise ValueError(f"invalid adapter {v!r}; expected a name such as hci0")
        return v

    @field_validator("services", mode="before")
    @classmethod
    def _services(cls, v: object) -> object:
        if isinstance(v, list):
            for s in v:
                if s not in SERVICES:
                    raise ValueError(f"unknown GATT service {s!r}; this driver speaks {SERVICE_LIST}")
        return v

    @field_validator("resident")
    @classmethod
    def _resident(cls, v: str | None) -> str | None:
        if v is not None and not RESIDENT_RE.match(v):
            raise ValueError(
                f"invalid resident {v!r}; expected the resident's id (1-64 letters, digits, . _ - @ :)"
            )
        return v

    @model_validator(mode="after")
    def _check(self) -> BleDevice:
        if self.stale_after <= 0:
            raise ValueError("stale_after must be greater than 0")
        if self.mode == "gatt":
            if not self.services:
                raise ValueError(f"mode gatt needs services: [{SERVICE_LIST}] (one or more)")
            if self.points:
                raise ValueError(
                    "mode gatt reports measurements as events; points: are for the advertising modes"
                )
        elif self.services:
            raise ValueError(f"services: are for mode gatt; a device of mode {self.mode} only advertises")
        elif self.resident is not None:
            raise ValueError(f"resident: is for mode gatt; the readings of mode {self.mode} name nobody")
        if self.address is None and not (self.mode in ("ibeacon", "eddystone") and self.beacon):
            raise ValueError("address: is required (mode ibeacon or eddystone may give beacon: ids instead)")
        if self.beacon is not None:
            b = self.beacon
            if self.mode not in ("ibeacon", "eddystone"):
                raise ValueError(f"beacon: is for mode ibeacon or eddystone, not {self.mode}")
            if self.mode == "ibeacon" and (not b.uuid or b.namespace or b.instance):
                raise ValueError("beacon: of mode ibeacon is uuid: (and major:, minor:)")
            if self.mode == "eddystone" and (
                not b.namespace or b.uuid or b.major is not None or b.minor is not None
            ):
                raise ValueError("beacon: of mode eddystone is namespace: (and instance:)")
        if self.mode in MODES and (self.bind_key_env or self.bind_key_file):
            raise ValueError("bind_key_env and bind_key_file are for mode bthome (encrypted BTHome)")
        if self.mode == "advert":
            if not self.profile:
                raise ValueError(
                    "mode advert reads the layout of its profile: give profile: (e.g. ble-ruuvi-rawv2)"
                )
            try:
                mfr.load_layout(self.profile)
            except LookupError as exc:
                raise ValueError(str(exc).strip("'\"")) from None
            except ConfigError as exc:
                raise ValueError(_layout_error(self.profile, exc)) from None
        if self.records_timeout <= 0:
            raise ValueError("records_timeout must be greater than 0")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be at least reconnect_min")
        return self

    def watch(self) -> AdvertWatch:
        """Modes ibeacon, eddystone, advert: what the driver reads each advertisement with."""
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode} has no advertisement watch")
        layout = mfr.load_layout(self.profile) if self.mode == "advert" and self.profile else None
        ids = self.beacon.model_dump() if self.beacon else None
        return watch_for(cast(Mode, self.mode), self.address, ids, layout)

    def point_infos(self) -> list[PointInfo]:
        if self.mode in MODES and not self.points:
            return [
                PointInfo(
                    id=f"{self.id}.{p.name}",
                    device=self.id,
                    name=p.name,
                    type=p.type,
                    unit=p.unit,
                    description=p.description,
                )
                for p in self.watch().points()
            ]
        if self.mode == "gatt":
            return [
                PointInfo(
                    id=f"{self.id}.measurements",
                    device=self.id,
                    name="measurements",
                    type=PointType.INT,
                    description="measurements received since the driver started",
                )
            ]
        return super().point_infos()
