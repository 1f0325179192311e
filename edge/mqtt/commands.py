"""Downlink commands (`commands: true`): a point write requested on the command topic, answered on
the response topic.

A request is `{"id": "...", "point": "device.point", "value": ..., "ts": <unix seconds issued>}`.
It is refused, with a reason, counted and never reaching a device, when it is malformed, older than
`command_ttl` (or issued further in the future than that), a replay of a request id seen within
the TTL, over `command_rate`, or for a point above the sink's `max_privacy`. Otherwise it is the
same write the UI makes (`Hub.write`: only `writable` points, the value checked against the
point's type), from source `mqtt:<sink id>`, and audited under that name. The answer is
`{"id", "point", "status": ok|rejected|failed|timeout|refused, "reason", "value"}`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any

import orjson

from edge import audit
from edge.model import PRIVACY_RANK

if TYPE_CHECKING:
    from edge.mqtt.config import MqttSinkConfig
    from edge.plugins import ComponentContext

MAX_REQUEST = 4096  # bytes; the UI's write takes the same
REMEMBERED = 100_000  # request ids kept for replay detection (each for command_ttl at most)


class Refused(Exception):
    """A request that never reaches a device; the message is the reason sent back."""


class Commands:
    """Validates requests and runs the writes; the sink feeds it messages and publishes answers."""

    def __init__(self, cfg: MqttSinkConfig, ctx: ComponentContext, source: str) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.source = source
        self.seen: OrderedDict[str, float] = OrderedDict()  # request id -> when it arrived
        self.refused: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.received = 0
        self._tokens = float(cfg.command_rate)
        self._refilled = time.monotonic()

    def _take_token(self) -> bool:
        now = time.monotonic()
        per_s = self.cfg.command_rate / 60.0
        self._tokens = min(float(self.cfg.command_rate), self._tokens + (now - self._refilled) * per_s)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _forget_old(self, now: float) -> None:
        horizon = now - 2 * self.cfg.command_ttl
        while self.seen and (next(iter(self.seen.values())) < horizon or len(self.seen) > REMEMBERED):
            self.seen.popitem(last=False)

    def parse(self, payload: bytes) -> dict[str, Any]:
        """The request, checked; raises Refused with the reason."""
        if len(payload) > MAX_REQUEST:
            raise Refused(f"malformed: request of {len(payload)} bytes; at most {MAX_REQUEST}")
        try:
            req = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise Refused(f"malformed: not JSON ({exc})") from None
        if not isinstance(req, dict):
            raise Refused('malformed: expected {"id", "point", "value", "ts"}')
        rid, point, ts = req.get("id"), req.get("point"), req.get("ts")
        if not isinstance(rid, str) or not rid or len(rid) > 200:
            raise Refused('malformed: "id" must be a non-empty string (at most 200 characters)')
        if not isinstance(point, str) or "." not in point:
            raise Refused('malformed: "point" must be a point id (device.point)')
        if "value" not in req:
            raise Refused('malformed: "value" is missing')
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise Refused('malformed: "ts" must be the unix time (seconds) the request was issued')
        return req

    async def handle(self, payload: bytes) -> dict[str, Any]:
        """Run one request; returns the answer to publish."""
        self.received += 1
        now = time.time()
        rid: Any = None
        point: Any = None
        try:
            req = self.parse(payload)
            rid, point = req["id"], req["point"]
            age = now - float(req["ts"])
            if age > self.cfg.command_ttl:
                raise Refused(f"expired: issued {age:.1f}s ago; command_ttl is {self.cfg.command_ttl:g}s")
            if age < -self.cfg.command_ttl:
                raise Refused(f"expired: issued {-age:.1f}s in the future; the clocks disagree")
            self._forget_old(now)
            if rid in self.seen:
                raise Refused(f"replayed: request id {rid!r} was already received")
            self.seen[rid] = now
            if not self._take_token():
                raise Refused(f"rate limited: at most {self.cfg.command_rate} requests a minute")
            info = self.ctx.hub.points.get(point)
            if info is not None and PRIVACY_RANK[info.privacy] > PRIVACY_RANK[self.cfg.max_privacy]:
                raise Refused(
                    f"point {point!r} is {info.privacy}; this sink's max_privacy is {self.cfg.max_privacy}"
                )
        except Refused as exc:
            reason = str(exc)
            self.refused[reason.partition(":")[0]] += 1
            answer = {"id": rid, "point": point, "status": "refused", "reason": reason, "value": None}
            await self._audit(point, None, answer)
            return answer
        result = await self.ctx.hub.write(point, req["value"], source=self.source)
        self.outcomes[str(result.status)] += 1
        answer = {
            "id": rid,
            "point": point,
            "status": str(result.status),
            "reason": result.reason,
            "value": result.value,
        }
        await self._audit(point, req["value"], answer)
        return answer

    async def _audit(self, point: str | None, value: Any, answer: dict[str, Any]) -> None:
        state = self.ctx.state
        if state is None:
            return
        await asyncio.to_thread(
            audit.record,
            state,
            self.source,
            "point_write",
            point or "",
            value=value,
            status=answer["status"],
            reason=answer["reason"],
            request=answer["id"],
        )

    def status(self) -> dict[str, Any]:
        return {
            "commands_received": self.received,
            "commands_refused": dict(self.refused),
            "commands_done": dict(self.outcomes),
        }
