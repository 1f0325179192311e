"""The data model every part of the runtime shares: readings, events, commands, health.

Readings are NamedTuples on purpose: they are created for every sample on the hot path, and a
tuple is the cheapest record Python has (and feeds `executemany` without conversion).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple

# Ids are matched whole with `\Z`: `$` also matches before a final newline, and an id "dev-2\n"
# would break the HTTP headers, line protocol and batch schema it travels in.
ID_RE = re.compile(r"^[a-z0-9_-]+\Z")
SITE_ID_RE = re.compile(r"^[a-z0-9-]+\Z")
# C0, DEL and C1 controls: never in an event kind (a newline in a kind starts a new line of
# InfluxDB's line protocol, a new header in HTTP)
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Value = float | int | bool | str | None


class Quality(IntEnum):
    """Quality of a reading; stored as its integer, printed as its name."""

    GOOD = 0
    BAD = 1
    STALE = 2

    @property
    def label(self) -> str:
        return QUALITY_NAMES[self]


QUALITY_NAMES = ("good", "bad", "stale")
QUALITY_BY_NAME = {name: Quality(i) for i, name in enumerate(QUALITY_NAMES)}


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Privacy(StrEnum):
    """PIPL classes: personal and sensitive data are minimised before they leave the site."""

    PUBLIC = "public"
    PERSONAL = "personal"
    SENSITIVE = "sensitive"


#: privacy classes in order: data of a class may go wherever that class or a higher one is allowed
PRIVACY_RANK = {Privacy.PUBLIC: 0, Privacy.PERSONAL: 1, Privacy.SENSITIVE: 2}

#: event kinds that carry health measurements: sensitive unless the payload says otherwise.
SENSITIVE_EVENT_KINDS = frozenset(
    {"blood_pressure", "heart_rate", "weight", "body_temperature", "glucose", "spo2", "health_measurement"}
)


def valid_event_kind(kind: object) -> str:
    """`kind` when it can name an event: a non-empty text without control characters (any other
    character, spaces and non-ASCII letters included, is carried escaped where it goes)."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"an event kind is a non-empty text, not {kind!r}")
    bad = CONTROL_RE.search(kind)
    if bad is not None:
        raise ValueError(
            f"event kind {kind!r} holds the control character {bad.group()!r} at position "
            f"{bad.start()}; use letters, digits, spaces and punctuation"
        )
    return kind


def event_privacy(kind: str, payload: Any, points: Any) -> Privacy:
    """An event's class — the one rule the sinks, the pull API, the local UI and the rules share:
    `payload["privacy"]` if it names a class, else the class of the known point `payload["point"]`,
    else `sensitive` for health-measurement kinds, else `public`. `points` maps point ids to
    PointInfo."""
    if isinstance(payload, dict):
        named = payload.get("privacy")
        if isinstance(named, str) and named in PRIVACY_RANK:
            return Privacy(named)
        point = payload.get("point")
        info = points.get(point) if isinstance(point, str) else None
        if info is not None:
            return info.privacy  # type: ignore[no-any-return]
    return Privacy.SENSITIVE if kind in SENSITIVE_EVENT_KINDS else Privacy.PUBLIC


class PointType(StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STR = "str"


class Reading(NamedTuple):
    """One sample of one point. `point` is the full id `device.point`; `ts` is UTC epoch seconds."""

    ts: float
    point: str
    value: Value
    quality: int = Quality.GOOD


@dataclass(slots=True)
class Event:
    """A structured record: an alert, a measurement from a kiosk, a device going offline."""

    kind: str
    source: str
    severity: str = Severity.INFO
    payload: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


Record = Reading | Event


@dataclass(slots=True, frozen=True)
class PointInfo:
    """Metadata of one point, as the pull API and the UI show it."""

    id: str  # device.point
    device: str
    name: str
    type: PointType = PointType.FLOAT
    unit: str = ""
    writable: bool = False
    privacy: Privacy = Privacy.PUBLIC
    deadband: float = 0.0  # journal a change only when |new - last journaled| > deadband
    report_every: float = 0.0  # ...but journal at least this often (seconds; 0 = only on change)
    description: str = ""
    precision: int | None = None  # decimals people are shown; None: derived from the unit


class HealthState(StrEnum):
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"
    STARTING = "starting"
    STOPPED = "stopped"


@dataclass(slots=True)
class Health:
    state: HealthState = HealthState.STARTING
    reason: str = ""
    since: float = field(default_factory=time.time)
    errors: int = 0  # driver errors since start (timeouts, garbage, exceptions)
    last_ok: float | None = None

    def set(self, state: HealthState, reason: str = "") -> bool:
        """Change state; returns True when it changed (so the caller can emit an event)."""
        if state == self.state and reason == self.reason:
            return False
        changed = state != self.state
        self.state = state
        self.reason = reason
        if changed:
            self.since = time.time()
        return changed

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "reason": self.reason,
            "since": self.since,
            "errors": self.errors,
            "last_ok": self.last_ok,
        }


class CommandStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    REJECTED = "rejected"  # not writable, unknown point, bad value: never reached the device


@dataclass(slots=True)
class CommandResult:
    point: str
    value: Value
    status: CommandStatus
    reason: str = ""
    source: str = ""
    ts: float = field(default_factory=time.time)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == CommandStatus.OK

    def as_event(self, privacy: Privacy | None = None) -> Event:
        """The `command` event journaling this write. `privacy`: the class of the data the value was
        derived from (a rule's firing), when above the point's own; the event carries it, as its
        value and a refusal's reason (which quotes the value) do. None: classed by its point."""
        device = self.point.split(".", 1)[0]
        payload: dict[str, Any] = {
            "point": self.point,
            "value": self.value,
            "status": str(self.status),
            "reason": self.reason,
            "by": self.source,
            "duration_ms": round(self.duration_ms, 3),
        }
        if privacy is not None:
            payload["privacy"] = str(privacy)
        return Event(
            kind="command",
            source=device,
            severity=Severity.INFO if self.ok else Severity.WARNING,
            payload=payload,
            ts=self.ts,
        )


def point_id(device: str, name: str) -> str:
    """The id of point `name` of `device`, as the hub, the journal, rules and the APIs address it.
    Neither part can hold a dot (`ID_RE`), so `split_point` takes it apart again."""
    return f"{device}.{name}"


def split_point(point_id: str) -> tuple[str, str]:
    device, _, name = point_id.partition(".")
    return device, name


def reading_record(seq: int, r: Reading) -> dict[str, Any]:
    """A reading in the one shape shared by `edge buffer tail --json` and the pull API."""
    return {
        "seq": seq,
        "ts": r.ts,
        "type": "reading",
        "point": r.point,
        "value": r.value,
        "quality": QUALITY_NAMES[r.quality],
    }


def event_record(seq: int, e: Event) -> dict[str, Any]:
    """An event in the one shape shared by `edge buffer tail --json` and the pull API."""
    return {
        "seq": seq,
        "ts": e.ts,
        "type": "event",
        "kind": e.kind,
        "source": e.source,
        "severity": str(e.severity),
        "payload": e.payload,
    }
