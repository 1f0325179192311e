"""The native HTTP sink: gzip-compressed JSON batches POSTed to a URL (docs/upstream-format.schema.json).

Each batch names the gateway and the `seq` range it covers; the `Idempotency-Key` header is
derived from gateway, sink and that range, so a receiver can de-duplicate replays. Auth is a
bearer token and/or an HMAC-SHA256 signature of the body as sent (after gzip) with a shared
secret; both come from the environment or a file, never the site file.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from edge.model import QUALITY_NAMES
from edge.store.records import Row
from edge.store.rows import BOOL_FLAG, CLOCK_FLAG
from edge.sync.base import LinkBoard, PushSink
from edge.sync.sink_config import PushSinkConfig
from edge.validation import SitePath, resolve_secret

if TYPE_CHECKING:
    from edge.plugins import ComponentContext

FORMAT = "community-edge/batch/v1"
SIGNATURE_HEADER = "X-Edge-Signature"


class HttpSinkConfig(PushSinkConfig):
    type: str = "http"
    hmac_secret_env: str | None = None
    hmac_secret_file: SitePath | None = None


def reading_value(value: Any, quality: int) -> tuple[Any, int]:
    """A journal value and quality as sent: a bool is stored as 0/1 with BOOL_FLAG in its quality
    (and the clock flag, CLOCK_FLAG, is not a quality)."""
    if quality & BOOL_FLAG:
        return bool(value), quality & 3
    return value, quality & 3


def batch_record(row: Row) -> dict[str, Any]:
    """One journal row as the batch document holds it (the MQTT sink's json and point formats
    too): a reading {seq, ts, point, value, quality} or an event {seq, ts, kind, source,
    severity, payload}; either with `"clock_untrusted": true` when it was journaled while the
    clock was not trusted (absent otherwise)."""
    seq, ts, point, value, quality, kind, severity, payload = row
    if kind is None:
        if quality > 3:  # a bool or the clock flag (bits above the quality): rare, off the hot path
            return _flagged_reading(row)
        return {"seq": seq, "ts": ts, "point": point, "value": value, "quality": QUALITY_NAMES[quality]}
    rec = {
        "seq": seq,
        "ts": ts,
        "kind": kind,
        "source": point,
        "severity": severity,
        # already JSON in the journal: embed it without a decode/encode round trip
        "payload": orjson.Fragment(payload or "{}"),
    }
    if quality:  # an event's quality is NULL unless the clock flag is set
        rec["clock_untrusted"] = True
    return rec


def _flagged_reading(row: Row) -> dict[str, Any]:
    seq, ts, point, value, quality, _kind, _severity, _payload = row
    if quality & BOOL_FLAG:
        value = bool(value)
    rec = {"seq": seq, "ts": ts, "point": point, "value": value, "quality": QUALITY_NAMES[quality & 3]}
    if quality & CLOCK_FLAG:
        rec["clock_untrusted"] = True
    return rec


def encode_batch(gateway: str, sink: str, rows: list[Row], first: int, last: int) -> bytes:
    """The batch document for `rows` (raw journal rows), as JSON bytes."""
    readings: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for row in rows:
        (readings if row[5] is None else events).append(batch_record(row))
    return orjson.dumps(
        {
            "format": FORMAT,
            "gateway": gateway,
            "sink": sink,
            "first_seq": first,
            "last_seq": last,
            "sent_at": time.time(),
            "readings": readings,
            "events": events,
        }
    )


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class HttpSink(PushSink):
    type_name: ClassVar[str] = "http"
    config_model: ClassVar[type[PushSinkConfig]] = HttpSinkConfig

    def __init__(self, cfg: PushSinkConfig, ctx: ComponentContext, links: LinkBoard | None = None) -> None:
        super().__init__(cfg, ctx, links)
        assert isinstance(cfg, HttpSinkConfig)
        secret = resolve_secret(cfg.hmac_secret_env, cfg.hmac_secret_file, f"upstream {cfg.id} hmac secret")
        self.hmac_secret = secret.encode() if secret else None

    def encode(self, rows: list[Row], first: int, last: int) -> bytes:
        return encode_batch(self.gateway, self.id, rows, first, last)

    def extra_headers(self, body: bytes, first: int, last: int) -> dict[str, str]:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.hmac_secret:
            headers[SIGNATURE_HEADER] = sign(self.hmac_secret, body)
        return headers
