"""The camera device entry: source, watchdog, analysis rate, parking zones, snapshots, retention.

Zone polygons are in normalised coordinates (0..1 of the frame's width and height), so a zone
drawn once stays right when the camera's stream resolution changes (main vs sub stream).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from drivers.camera.points import camera_points
from edge.driver import DeviceConfig
from edge.model import PointInfo, Privacy
from edge.units import Duration, Size
from edge.validation import DeviceId, Strict, ZoneName, site_relative

#: accepted source schemes; anything else is refused with this list
SCHEMES = ("http", "https", "rtsp", "rtsps", "file")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class Zone(Strict):
    """A parking space: a polygon in normalised 0..1 image coordinates."""

    name: ZoneName
    polygon: list[list[float]]

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v: list[list[float]]) -> list[list[float]]:
        if len(v) < 3:
            raise ValueError(f"a polygon needs at least 3 corners [[x, y], ...]; got {len(v)}")
        for i, corner in enumerate(v):
            if len(corner) != 2:
                raise ValueError(f"corner {i} must be [x, y]; got {corner}")
            if not all(0.0 <= c <= 1.0 for c in corner):
                raise ValueError(
                    f"corner {i} {corner} is outside 0..1: coordinates are fractions of the frame's "
                    "width and height"
                )
        area = 0.0
        for (x1, y1), (x2, y2) in zip(v, v[1:] + v[:1], strict=True):
            area += x1 * y2 - x2 * y1
        if abs(area) / 2 < 1e-4:
            raise ValueError("the polygon encloses no area (its corners lie on a line or coincide)")
        return v


#: the smallest `snapshots.max_bytes`: room for a few snapshots of a 1080p stream (100-500 KB
#: each); below one snapshot every picture would be deleted as it is stored
MAX_BYTES_MIN = 2 * 1024**2


class Snapshots(Strict):
    """When snapshots are taken besides rules and commands, and how many are kept."""

    every: Duration = 0.0  # periodic snapshots (0: none)
    quality: int = Field(default=80, ge=10, le=100)  # JPEG quality
    keep: int = Field(default=500, ge=1, le=1_000_000)  # per camera, oldest deleted first
    max_bytes: Size = 256 * 1024**2  # per camera

    @field_validator("max_bytes")
    @classmethod
    def _max_bytes(cls, v: int) -> int:
        if v < MAX_BYTES_MIN:
            raise ValueError(
                f"must be at least {MAX_BYTES_MIN // 1024**2} MiB (got {v} bytes): one snapshot "
                "takes 100-500 KB, and a cap below a few of them deletes every picture as it is "
                "stored; to keep fewer pictures lower snapshots.keep"
            )
        return v


#: bounds of `subject_from.within`: a picture is filed under the resident measured this recently
WITHIN_MIN, WITHIN_MAX = 1.0, 3600.0


class SubjectFrom(Strict):
    """Whom a sensitive camera's periodic and command snapshots are about: the subject (resident
    or plate) named by the newest event of `device`, if that event is at most `within` old."""

    device: DeviceId
    within: Duration = 120.0

    @field_validator("within")
    @classmethod
    def _within(cls, v: float) -> float:
        if not WITHIN_MIN <= v <= WITHIN_MAX:
            raise ValueError(
                f"must be between {WITHIN_MIN:g} s and {WITHIN_MAX / 60:g} min: a picture taken this "
                "long after the device's event is filed under the subject the event names"
            )
        return v


class CameraDevice(DeviceConfig):
    """A camera: one video source, analysed at a low rate, snapshots stored as blobs."""

    driver: Literal["camera"] = "camera"
    url: str  # http(s) MJPEG, rtsp(s)://, a file path, or a V4L2 device (/dev/video0)
    loop: bool = False  # a file source starts over at its end (demos)
    realtime: bool = True  # a file source is read at its own frame rate, not as fast as it decodes
    open_timeout: Duration = 5.0
    read_timeout: Duration = 3.0
    stale_after: Duration = 5.0  # watchdog: no good frame for this long -> offline, reopen
    reconnect_max: Duration = 30.0  # cap of the reopen backoff
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    analyse_every: Duration = 1.0
    analyse_width: int = Field(320, ge=64, le=1920)  # frames are downscaled to this width first
    zones: list[Zone] = Field(default_factory=list)
    reference_frames: int = Field(5, ge=1, le=100)  # the empty reference: mean of the first N analysed
    threshold: int = Field(30, ge=1, le=255)  # grey-level difference that counts as changed
    occupied_fraction: float = Field(0.3, gt=0, lt=1)  # share of a zone that must differ
    hold: Duration = 3.0  # a zone's state must hold this long before its point changes
    redact: bool = True  # blur faces, plates and moving regions before a snapshot is stored
    #: the class of its snapshots: `sensitive` (a camera at the health kiosk) seals each file at
    #: rest and needs privacy.master_key_file; a `personal` camera's files are sealed (as personal
    #: data) where the site has one, plain otherwise
    privacy: Privacy = Privacy.PERSONAL
    snapshots: Snapshots = Field(default_factory=lambda: Snapshots())
    #: a sensitive camera's periodic and command snapshots are about the subject named by the
    #: newest event of this device (a kiosk's measurement), if it is recent enough
    subject_from: SubjectFrom | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        text = v.strip()
        if not text:
            raise ValueError("url is empty; expected http(s)://, rtsp(s)://, a file path or /dev/videoN")
        m = _SCHEME_RE.match(text)
        if m and m.group(1).lower() not in SCHEMES:
            raise ValueError(
                f"unsupported url scheme {m.group(1)!r}; expected one of {', '.join(SCHEMES)}, "
                "a file path or a V4L2 device such as /dev/video0"
            )
        return text if m else site_relative(text)  # a video file beside the site file

    @field_validator("privacy")
    @classmethod
    def _privacy(cls, v: Privacy) -> Privacy:
        if v == Privacy.PUBLIC:
            raise ValueError(
                "a camera's snapshots show people: privacy is personal (the default) or sensitive"
            )
        return v

    @field_validator("analyse_every", "stale_after", "open_timeout", "read_timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @field_validator("subject_from")
    @classmethod
    def _subject_needs_sensitive(cls, v: SubjectFrom | None, info: ValidationInfo) -> SubjectFrom | None:
        # `privacy` is declared above: validated first, it is in info.data (absent if it was refused)
        if v is not None and info.data.get("privacy", Privacy.SENSITIVE) != Privacy.SENSITIVE:
            raise ValueError(
                "subject_from needs privacy: sensitive: only a sensitive camera seals its snapshots "
                "under the key of the subject they show (a personal camera's are not sealed per "
                "subject, so forgetting a resident would not remove them); set privacy: sensitive "
                "or remove subject_from"
            )
        return v

    @model_validator(mode="after")
    def _unique_zones(self) -> CameraDevice:
        names = [z.name for z in self.zones]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate zone names: {', '.join(dupes)}")
        return self

    def source_kind(self) -> Literal["network", "file", "device"]:
        low = self.url.lower()
        if low.startswith("/dev/video"):
            return "device"
        if low.startswith("file://") or not _SCHEME_RE.match(self.url):
            return "file"
        return "network"

    def source_path(self) -> str:
        """What OpenCV opens (a `file://` prefix removed)."""
        return self.url[len("file://") :] if self.url.lower().startswith("file://") else self.url

    def point_infos(self) -> list[PointInfo]:
        return camera_points(self.id, [z.name for z in self.zones])


def sealing_problems(site: Any) -> list[str]:
    """One line per problem with how a camera's snapshots are sealed (`FILE:LINE: KEY: ...`): a
    sensitive camera on a site that has no master key to seal them with, and a `subject_from`
    that names no other device of the site."""
    out = []
    if site.privacy.master_key_file is None:
        for i, d in enumerate(site.devices):
            if isinstance(d, CameraDevice) and d.enabled and d.privacy == Privacy.SENSITIVE:
                out.append(
                    f"{_where(site, ('devices', i, 'privacy'))}: camera {d.id} has privacy: sensitive: "
                    "its snapshots are sealed at rest, which needs privacy.master_key_file (edge "
                    "privacy new-key FILE writes one); or set privacy: personal"
                )
    return out + subject_problems(site)


def subject_problems(site: Any) -> list[str]:
    """One line per camera whose `subject_from.device` is not the id of another device of the
    site (`FILE:LINE: devices[i].subject_from.device: ...`)."""
    ids = [d.id for d in site.devices]
    out = []
    for i, d in enumerate(site.devices):
        if not isinstance(d, CameraDevice) or d.subject_from is None:
            continue
        name = d.subject_from.device
        if name == d.id:
            why = "names the camera itself; it names the device whose events say whom it shows (a kiosk)"
        elif name not in ids:
            known = ", ".join(sorted(str(x) for x in ids if x != d.id)) or "none"
            why = f"names no device of the site (devices: {known})"
        else:
            continue
        out.append(f"{_where(site, ('devices', i, 'subject_from', 'device'))}: camera {d.id}: {name!r} {why}")
    return out


def _where(site: Any, path: tuple[str | int, ...]) -> str:
    """`FILE:LINE: KEY` of `path` in the site file (without the line when it cannot be read)."""
    from edge.yamlpos import YamlError, format_path, load, read_text

    source = str(site.source)
    try:
        _, pos = load(read_text(source), source)
        line = pos.line_of(path)
    except (OSError, YamlError, UnicodeDecodeError):
        line = None
    return f"{source}:{line}: {format_path(path)}" if line else f"{source}: {format_path(path)}"
