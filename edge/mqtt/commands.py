"""Downlink commands (`commands: true`): a point write requested on the command topic, answered on
the response topic.

A request is `{"id": "...", "point": "device.point", "value": ..., "ts": <unix seconds issued>}`.
It is refused, with a reason, counted and never reaching a device, when it is malformed, older than
`command_ttl` when it arrived (or issued further in the future than that), a replay of a request
id seen within the TTL (kept in the state DB, so a restart of the gateway does not make a replay
new), for a point above the sink's `max_privacy`, or over `command_rate`; only a request that
passes every check takes its id (and only one that passed the privacy check a rate token).
Otherwise it is the same write the UI makes (`Hub.write`: only `writable` points, the value checked
against the point's type), from source `mqtt:<sink id>`, and audited under that name. The answer is
`{"id", "point", "status": ok|rejected|failed|timeout|refused, "reason", "value"}`; it is kept with
the id (`edge.mqtt.seen`: sealed, or its status only, when it quotes a personal or sensitive value),
and the same request (same id, point and value) sent again within the replay window gets that
answer again without a second write: an answer lost on the way is never lost for good.

With the thingsboard format the same checks and write serve ThingsBoard's gateway RPC
(`v1/gateway/rpc`), less the TTL: its requests carry no issue time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from edge import audit
from edge.model import PRIVACY_RANK
from edge.mqtt.seen import SeenRequests, fingerprint_of

if TYPE_CHECKING:
    from edge.mqtt.config import MqttSinkConfig
    from edge.plugins import ComponentContext

log = logging.getLogger("edge.mqtt")

MAX_REQUEST = 4096  # bytes; the UI's write takes the same
PRUNE_EVERY_MIN = 1.0  # s: the shortest wait between two deletions of requests past the window


class Refused(Exception):
    """A request that never reaches a device; the message is the reason sent back."""


#: ThingsBoard RPC methods taken as a point write; params `{"point": "<point>", "value": ...}`
RPC_WRITE_METHODS = ("set", "setValue", "write")


def is_rpc_reply(payload: bytes) -> bool:
    """A reply on `v1/gateway/rpc` (the gateway's own, coming back through its subscription):
    `id` at the top level and a `data` object without a method, where a request has its id inside
    `data`. Anything else on the topic is taken as a request (refused with a reason if it is not
    one), never skipped unseen."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(doc, dict) or "id" not in doc:
        return False
    data = doc.get("data")
    return isinstance(data, dict) and "method" not in data


def encode_answer(answer: dict[str, Any]) -> bytes:
    """An answer as JSON, always: a value JSON cannot carry (an integer beyond 64 bits) is sent as
    null with the reason saying so, so the request is answered all the same."""
    try:
        return orjson.dumps(answer)
    except (TypeError, orjson.JSONEncodeError) as exc:
        body = answer.get("data") if isinstance(answer.get("data"), dict) else answer
        assert isinstance(body, dict)
        body["value"] = None
        body["reason"] = f"{body.get('reason') or ''} (value not shown: {exc})".strip()
        try:
            return orjson.dumps(answer)
        except (TypeError, orjson.JSONEncodeError):
            return orjson.dumps({"id": None, "status": "failed", "reason": f"answer not encodable: {exc}"})


def parse_rpc(
    payload: bytes, devices: Mapping[str, str], named: dict[str, Any] | None = None
) -> tuple[str, int | str, str, Any]:
    """A ThingsBoard gateway RPC request `{"device": NAME, "data": {"id": N, "method": "set",
    "params": {"point": P, "value": V}}}` as (device name, id, point id, value); raises Refused.
    P is the point's name on that device (or its full id `device.point` on that device).
    `named` gets the request's `device` and `id` as soon as they are read (when a string, and a
    number or string), so a refusal further on can still name them in its reply."""
    if len(payload) > MAX_REQUEST:
        raise Refused(f"malformed: request of {len(payload)} bytes; at most {MAX_REQUEST}")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Refused(f"malformed: not JSON ({exc})") from None
    shape = '{"device", "data": {"id", "method", "params": {"point", "value"}}}'
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise Refused(f"malformed: expected {shape}")
    name, data = doc.get("device"), doc["data"]
    rpc_id = data.get("id")
    id_ok = not isinstance(rpc_id, bool) and isinstance(rpc_id, int | str) and rpc_id != ""
    if named is not None:
        named["device"] = name if isinstance(name, str) else None
        named["id"] = rpc_id if id_ok else None
    if not isinstance(name, str) or name not in devices:
        raise Refused(f'malformed: "device" {name!r} is not a device of this gateway')
    if not id_ok:
        raise Refused('malformed: "data.id" must be the request number')
    method = data.get("method")
    if method not in RPC_WRITE_METHODS:
        raise Refused(f'malformed: "data.method" {method!r} is not one of {", ".join(RPC_WRITE_METHODS)}')
    params = data.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("point"), str) or "value" not in params:
        raise Refused('malformed: "data.params" must be {"point": "<point name>", "value": ...}')
    device = devices[name]
    point = params["point"]
    if "." in point:
        if point.partition(".")[0] != device:
            raise Refused(f"malformed: point {point!r} is not on device {name!r}")
    else:
        point = f"{device}.{point}"
    return name, rpc_id, point, params["value"]


class Commands:
    """Validates requests and runs the writes; the sink feeds it messages and publishes answers."""

    def __init__(self, cfg: MqttSinkConfig, ctx: ComponentContext, source: str) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.source = source
        self.seen = SeenRequests(ctx.state, source, cfg.command_ttl)
        self.refused: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.received = 0
        self.errors = 0  # requests that failed on an error of the gateway's own (logged)
        self.retained = 0  # retained messages on a command topic, skipped unanswered
        self.answered_again = 0  # requests sent again, answered with the answer they were given
        self._tokens = float(cfg.command_rate)
        self._refilled = time.monotonic()

    async def prune_kept(self) -> None:
        """Delete the requests kept past the replay window: at once (those a stopped gateway left
        behind), then each as it leaves the window, whether or not another request arrives. Runs
        until cancelled; a state DB that fails (a full disk) is tried again a window later."""
        window = 2 * self.cfg.command_ttl
        while True:
            try:
                oldest = await asyncio.to_thread(self.seen.prune, time.time())
            except Exception:
                log.exception("sink %s: the requests kept past %gs could not be deleted", self.source, window)
                oldest = None
            wait = window if oldest is None else oldest + window - time.time()
            await asyncio.sleep(min(window, max(PRUNE_EVERY_MIN, wait)))

    def _take_token(self) -> bool:
        now = time.monotonic()
        per_s = self.cfg.command_rate / 60.0
        self._tokens = min(float(self.cfg.command_rate), self._tokens + (now - self._refilled) * per_s)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

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

    def device_of(self, payload: bytes, rpc: bool, devices: Mapping[str, str]) -> str | None:
        """The device a request writes to (its requests run one at a time, in order), or None
        for one that is refused before reaching any device (malformed)."""
        try:
            if rpc:
                return parse_rpc(payload, devices)[2].partition(".")[0]
            return str(self.parse(payload)["point"]).partition(".")[0]
        except Refused:
            return None

    async def handle(
        self, payload: bytes, arrived: float | None = None, refuse: Refused | None = None
    ) -> dict[str, Any]:
        """Run one request from the command topic; returns the answer to publish. `arrived`: the
        unix time it arrived (its age is judged then, not when its turn comes); `refuse`: a
        refusal for a request that passed parsing (the sink is too busy)."""
        self.received += 1
        try:
            req = self.parse(payload)
        except Refused as exc:
            return await self._refuse(None, None, exc)
        if refuse is not None:
            return await self._refuse(req["id"], req["point"], refuse)
        try:
            return await self.run(req["id"], req["point"], req["value"], float(req["ts"]), arrived)
        except Exception as exc:
            return self.failed(req["id"], req["point"], exc)

    def failed(self, rid: Any, point: Any, exc: Exception) -> dict[str, Any]:
        """The answer to a request that met an error of the gateway's own: logged and counted; the
        next request is handled as usual."""
        self.errors += 1
        log.exception("sink %s: request %r failed", self.source, rid)
        reason = f"failed: {type(exc).__name__}: {exc}"
        return {"id": rid, "point": point, "status": "failed", "reason": reason, "value": None}

    async def run(
        self, rid: str, point: str, value: Any, issued: float | None, arrived: float | None = None
    ) -> dict[str, Any]:
        """The checks every request goes through (TTL when it says when it was issued, replay,
        privacy, rate), then the write; returns the answer
        `{"id", "point", "status", "reason", "value"}`. Only a request that goes on to its write
        takes its id (a rate-limited or too-private one may be sent again with it), and only a
        request that passed the privacy check takes a rate token."""
        now = time.time()
        fingerprint = fingerprint_of(point, value)
        # the same request sent again (its answer lost on the way) gets the answer it was given,
        # whatever its age: the write is not repeated
        kept = await asyncio.to_thread(self.seen.stored, rid, fingerprint, value, now)
        if kept is not None:
            self.answered_again += 1
            return kept
        try:
            if issued is not None:
                age = (now if arrived is None else arrived) - issued
                if age > self.cfg.command_ttl:
                    raise Refused(f"expired: issued {age:.1f}s ago; command_ttl is {self.cfg.command_ttl:g}s")
                if age < -self.cfg.command_ttl:
                    raise Refused(f"expired: issued {-age:.1f}s in the future; the clocks disagree")
            replayed = Refused(f"replayed: request id {rid!r} was already received")
            if await asyncio.to_thread(self.seen.known, rid, now):
                raise replayed
            info = self.ctx.hub.points.get(point)
            # an answer quotes the value written: of a personal or sensitive point it is not kept
            # in clear
            privacy = str(info.privacy) if info is not None else "public"
            if info is not None and PRIVACY_RANK[info.privacy] > PRIVACY_RANK[self.cfg.max_privacy]:
                raise Refused(
                    f"private: point {point!r} is {info.privacy}; "
                    f"this sink's max_privacy is {self.cfg.max_privacy}"
                )
            if not self._take_token():
                raise Refused(f"rate limited: at most {self.cfg.command_rate} requests a minute")
            # stored before the write runs: a crash between the two loses the write, never repeats it
            if not await asyncio.to_thread(self.seen.take, rid, now, fingerprint, privacy != "public"):
                raise replayed
        except Refused as exc:
            return await self._refuse(rid, point, exc)
        result = await self.ctx.hub.write(point, value, source=self.source)
        self.outcomes[str(result.status)] += 1
        answer = {
            "id": rid,
            "point": point,
            "status": str(result.status),
            "reason": result.reason,
            "value": result.value,
        }
        try:
            body = encode_answer(dict(answer))
            await asyncio.to_thread(self.seen.answered, rid, body, fingerprint, value, privacy)
        except Exception:  # the write ran: its answer is sent all the same, only not kept
            log.exception("sink %s: the answer to request %r could not be kept", self.source, rid)
        await self._audit(point, value, answer)
        return answer

    async def _refuse(self, rid: Any, point: Any, exc: Refused) -> dict[str, Any]:
        reason = str(exc)
        self.refused[reason.partition(":")[0]] += 1
        answer = {"id": rid, "point": point, "status": "refused", "reason": reason, "value": None}
        await self._audit(point, None, answer)
        return answer

    async def handle_rpc(
        self, payload: bytes, devices: Mapping[str, str], refuse: Refused | None = None
    ) -> dict[str, Any]:
        """Run one ThingsBoard RPC request (`v1/gateway/rpc`); `devices` maps the names the
        gateway gave ThingsBoard to device ids. Returns the reply in ThingsBoard's shape,
        `{"device", "id", "data": {"success", "status", "reason", "point", "value"}}`."""
        self.received += 1
        named: dict[str, Any] = {"device": None, "id": None}
        try:
            device, rpc_id, point, value = parse_rpc(payload, devices, named)
        except Refused as exc:
            answer = await self._refuse(None, None, exc)
        else:
            if refuse is not None:
                return self._rpc_reply(named, await self._refuse(f"tb:{device}:{rpc_id}", point, refuse))
            # ThingsBoard numbers requests per device; it sends no issue time, so no TTL here
            try:
                answer = await self.run(f"tb:{device}:{rpc_id}", point, value, None)
            except Exception as exc:
                answer = self.failed(f"tb:{device}:{rpc_id}", point, exc)
        return self._rpc_reply(named, answer)

    @staticmethod
    def _rpc_reply(named: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        data = {k: answer[k] for k in ("status", "reason", "point", "value")}
        reply = {"device": named["device"], "id": named["id"]}
        return {**reply, "data": {"success": answer["status"] == "ok", **data}}

    async def _audit(self, point: str | None, value: Any, answer: dict[str, Any]) -> None:
        state = self.ctx.state
        if state is None:
            return
        info = self.ctx.hub.points.get(point) if isinstance(point, str) else None
        await asyncio.to_thread(
            audit.record,
            state,
            self.source,
            "point_write",
            point or "",
            **audit.written_value(info.privacy if info is not None else None, value),
            status=answer["status"],
            reason=audit.written_reason(info.privacy if info is not None else None, answer["reason"]),
            request=answer["id"],
        )

    def status(self) -> dict[str, Any]:
        return {
            "commands_received": self.received,
            "commands_refused": dict(self.refused),
            "commands_done": dict(self.outcomes),
            "commands_errors": self.errors,
            "commands_retained": self.retained,
            "commands_answered_again": self.answered_again,
        }
