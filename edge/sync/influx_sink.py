"""The InfluxDB sink: line protocol to `/write` (1.x) or `/api/v2/write` (2.x).

Readings: measurement = device id, tags `gateway` and `device` (and `quality` when not good),
one field per point name (a point named `time` as `time_`: InfluxDB refuses a field `time`),
timestamp truncated to the configured precision. Events: measurement `events`, tags
gateway/source/kind/severity, fields `payload` (JSON string) and `seq`. A record journaled
while the gateway's clock was not trusted has the tag `clock_untrusted=true` (absent otherwise): a
tag, so a query can select or leave out those timestamps without reading every field. A point with the same
measurement, tags and timestamp overwrites, so a replayed batch is idempotent. Readings without a
value (None) cannot be represented and are counted as `unrepresentable`; points InfluxDB drops as
older than its retention policy (it stores the rest of the batch) are counted as
`beyond_retention`, both in the status's `left_out`.

Events of one series (gateway/source/kind/severity) at one timestamp, such as the alerts one
poll fires, would overwrite each other. Within a batch each later one (in seq order) is written at
the next free unit of its series instead, counted in `events_shifted`; the encoding depends only
on the batch, so a retried batch writes the same points. Readings keep last-one-wins: two samples
of one point in one unit are one value at that precision, and checking every reading would cost
on the hot path.
"""

from __future__ import annotations

import functools
import math
import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import model_validator

from edge.model import QUALITY_NAMES
from edge.store.records import Row
from edge.store.rows import BOOL_FLAG, CLOCK_FLAG
from edge.sync.base import LinkBoard, Outcome, PushSink
from edge.sync.sink_config import PushSinkConfig

if TYPE_CHECKING:
    from edge.plugins import ComponentContext

UNTRUSTED_TAG = "clock_untrusted=true,"
SCALE = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
# The `precision=` query value each server version takes for a site-file precision: 1.x's /write
# knows n, u, ms, s, m, h and reads an unknown value ("us") as nanoseconds, answering 204, so
# microsecond points would land in 1970; 2.x's /api/v2/write takes ns, us, ms, s.
V1_PRECISION = {"s": "s", "ms": "ms", "us": "u", "ns": "n"}
V2_PRECISION = {"s": "s", "ms": "ms", "us": "us", "ns": "ns"}
#: InfluxDB's answer (1.x 400, 2.x 422) when it stored a write except the points older than its
#: retention policy (only ever named alone: another error in the same write is named instead)
BEYOND_RETENTION = re.compile(r"partial write: points beyond retention policy dropped=(\d+)")


class InfluxSinkConfig(PushSinkConfig):
    type: str = "influxdb"
    version: Literal[1, 2] = 1
    database: str | None = None  # 1.x
    retention_policy: str | None = None  # 1.x, optional
    org: str | None = None  # 2.x
    bucket: str | None = None  # 2.x
    precision: Literal["s", "ms", "us", "ns"] = "ms"

    credentials_hint: ClassVar[str] = (
        "give the credentials by reference: token_env: VARIABLE or token_file: PATH holding "
        "USER:PASSWORD for InfluxDB 1.x or the API token for 2.x (sent as Authorization: Token)"
    )

    @model_validator(mode="after")
    def _target(self) -> InfluxSinkConfig:
        if self.version == 1 and not self.database:
            raise ValueError("InfluxDB 1.x needs database: NAME")
        if self.version == 2 and not (self.org and self.bucket):
            raise ValueError("InfluxDB 2.x needs org: and bucket: (and token_env: or token_file:)")
        return self


# Line protocol (1.x and 2.x): a backslash is an escape only before the character it escapes, so
# backslashes are written as they are. A line break cannot be escaped in a name or tag: it would
# end the line (and start another, of the name's author's choosing); it and the other control
# characters Telegraf replaces are written as their two-character escapes (a newline as `\n`).
_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", **_CONTROL})
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", **_CONTROL})
#: what a final backslash is written as: InfluxDB reads one before the `,`, ` ` or `=` that
#: follows the name as an escape, so no name or tag can end in one (the line is refused)
FINAL_BACKSLASH = "\uff3c"


@functools.lru_cache(maxsize=4096)  # the same few device and point names, batch after batch
def _escape_key(s: str) -> str:
    """A tag key, tag value or field key: comma, equals sign and space escaped."""
    if s.endswith("\\"):
        s = s[:-1] + FINAL_BACKSLASH
    return s.translate(_KEY)


@functools.lru_cache(maxsize=1024)
def _escape_measurement(s: str) -> str:
    """A measurement: comma and space escaped (an equals sign is an ordinary character there)."""
    if s.endswith("\\"):
        s = s[:-1] + FINAL_BACKSLASH
    return s.translate(_MEASUREMENT)


#: InfluxDB refuses a field named `time` (every point of it, 400); a point of that name is
#: written as this field instead
TIME_FIELD = "time_"


def _field_key(name: str) -> str:
    return _escape_key(TIME_FIELD if name == "time" else name)


def _escape_str(s: str) -> str:
    """A string field value: only `"` and `\\` are escaped; a newline is carried as it is."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def units(ts: float, scale: int) -> int:
    """`ts` (epoch seconds) in whole units of 1/`scale` s, truncated as Telegraf truncates: a
    sample at 23:59:59.6 is written at 23:59:59 at precision s, never in the next day. A product a
    hair below a whole unit only by floating-point error (1082083438.317 x 1000 is
    1082083438316.9999) is that unit: the error of `ts` itself (half its ulp, scaled) and of the
    product (half its ulp)."""
    x = ts * scale
    t = math.floor(x)
    if t != x and t + 1 - x <= (math.ulp(ts) * scale + math.ulp(x)) / 2:
        t += 1
    return t


def field_value(value: Any) -> str | None:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return _escape_str(value)
    return None


class InfluxSink(PushSink):
    type_name: ClassVar[str] = "influxdb"
    config_model: ClassVar[type[PushSinkConfig]] = InfluxSinkConfig
    content_type: ClassVar[str] = "text/plain; charset=utf-8"

    def __init__(self, cfg: PushSinkConfig, ctx: ComponentContext, links: LinkBoard | None = None) -> None:
        super().__init__(cfg, ctx, links)
        assert isinstance(cfg, InfluxSinkConfig)
        self.icfg = cfg
        self.scale = SCALE[cfg.precision]
        self.gateway_tag = _escape_key(self.gateway)
        self.unrepresentable = 0
        self.beyond_retention = 0  # points InfluxDB dropped as older than its retention policy
        self.events_shifted = 0  # events written one or more units after their time (see encode)
        base = cfg.url.rstrip("/")
        if urlsplit(base).path in ("", "/"):
            path = "/write" if cfg.version == 1 else "/api/v2/write"
        else:
            path = ""  # the URL already names the write endpoint
        if cfg.version == 1:
            q = {"db": cfg.database, "precision": V1_PRECISION[cfg.precision]}
            if cfg.retention_policy:
                q["rp"] = cfg.retention_policy
        else:
            q = {"org": cfg.org, "bucket": cfg.bucket, "precision": V2_PRECISION[cfg.precision]}
        self._url = f"{base}{path}?{urlencode(q)}"

    def target(self) -> str:
        return self._url

    def extra_headers(self, body: bytes, first: int, last: int) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"} if self.token else {}

    def dropped_by_receiver(self, outcome: Outcome) -> int | None:
        """Points beyond the retention policy: InfluxDB wrote the rest of the batch and would
        drop these at every retry, so they are left out (counted) rather than dead-lettered."""
        found = BEYOND_RETENTION.search(outcome.body)
        if found is None:
            return None
        dropped = int(found.group(1))
        self.beyond_retention += dropped
        return dropped

    def encode(self, rows: list[Row], first: int, last: int) -> bytes:
        lines: list[str] = []
        add = lines.append
        scale = self.scale
        gw = self.gateway_tag
        taken: set[tuple[str, int]] = set()  # (series key, time) of the events written so far
        shifted = 0
        for seq, ts, point, value, quality, kind, severity, payload in rows:
            t = units(ts, scale)
            if kind is None:
                untrusted = ""  # tags in key order (what InfluxDB sorts them to): this one first
                if quality > 3:  # a bool, or the clock flag
                    if quality & BOOL_FLAG:
                        value = bool(value)
                    if quality & CLOCK_FLAG:
                        untrusted = UNTRUSTED_TAG
                    quality &= 3
                fv = field_value(value)
                if fv is None:
                    self.unrepresentable += 1
                    continue
                device, _, name = point.partition(".")
                q = "" if quality == 0 else f",quality={QUALITY_NAMES[quality]}"
                add(
                    f"{_escape_measurement(device)},{untrusted}device={_escape_key(device)},"
                    f"gateway={gw}{q} {_field_key(name)}={fv} {t}"
                )
            else:
                untrusted = UNTRUSTED_TAG if quality else ""  # an event's quality: NULL or the flag
                key = (
                    f"events,{untrusted}gateway={gw},kind={_escape_key(kind)},"
                    f"severity={_escape_key(severity or 'info')},source={_escape_key(point)}"
                )
                # events of one series at one time (the alerts of one poll) would overwrite each
                # other: a later one (in seq order) takes the next free unit of its series
                if (key, t) in taken:
                    t += 1
                    while (key, t) in taken:
                        t += 1
                    shifted += 1
                taken.add((key, t))
                add(f"{key} payload={_escape_str(payload or '{}')},seq={seq}i {t}")
        if shifted:
            self.events_shifted += shifted
        return ("\n".join(lines) + "\n").encode()

    def status(self) -> dict[str, Any]:
        out = super().status()
        out["unrepresentable"] = self.unrepresentable
        # as every format reports it
        out["left_out"] = {"unrepresentable": self.unrepresentable, "beyond_retention": self.beyond_retention}
        out["events_shifted"] = self.events_shifted
        return out
