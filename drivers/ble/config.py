"""Site-file models of BLE devices: address, adapter, mode, the BTHome point map, GATT services.

Mistakes a technician can make are caught here and name the key: a MAC address in the wrong
shape, an object name BTHome does not have, a health service this driver does not speak, points
in GATT mode (whose data are events, not points).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.ble.bthome import OBJECT_NAMES
from edge.driver import DeviceConfig, PointConfig
from edge.model import PointInfo, PointType, Privacy
from edge.units import Duration

MAC_RE = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")

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
RESIDENT_RE = re.compile(r"^[\w.@:-]{1,64}$")

#: not BTHome objects, but what every advertisement carries
EXTRA_OBJECTS = {"rssi": ("dBm", PointType.INT)}


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
        return object_type(self.object)


def check_object(name: str) -> str:
    """`name` if points can map it; otherwise a ValueError listing the objects they can."""
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


class BleDevice(DeviceConfig):
    """A BLE device entry: a BTHome sensor that advertises, or a GATT health instrument."""

    driver: Literal["ble"] = "ble"
    address: str
    adapter: str | None = None  # hci0; default: the first powered adapter
    mode: Literal["bthome", "gatt"] = "bthome"
    #: no advertisement for this long: offline, points stale (BTHome); offline (GATT)
    stale_after: Duration = 600.0
    # encrypted BTHome: the sensor's bind key, by reference only (never in the site file)
    bind_key_env: str | None = None
    bind_key_file: str | None = None
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
    def _address(cls, v: object) -> str:
        return valid_mac(v)

    def exclusive(self) -> list[tuple[str, str]]:
        return [("address", self.address)]

    @field_validator("adapter")
    @classmethod
    def _adapter(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^hci[0-9]+$", v):
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
                raise ValueError("mode gatt reports measurements as events; points: are for mode bthome")
        elif self.services:
            raise ValueError("services: are for mode gatt; a BTHome sensor only advertises")
        elif self.resident is not None:
            raise ValueError("resident: is for mode gatt; a BTHome sensor's readings name nobody")
        if self.records_timeout <= 0:
            raise ValueError("records_timeout must be greater than 0")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be at least reconnect_min")
        return self

    def point_infos(self) -> list[PointInfo]:
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
