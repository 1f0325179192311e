"""Executing what rules decide: writes, alerts/events, webhooks, virtual points, snapshots.

Each firing runs in its own task, so a slow webhook of one rule never delays another rule (nor
the engine, which only decides). A per-rule token bucket limits how many firings per minute
execute actions; the excess is dropped, counted per rule and reported once per burst as a
`rule_rate_limited` event. Every failed action is counted and journaled as `rule_action_failed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from edge.model import PRIVACY_RANK, Event, PointInfo, PointType, Privacy, Reading, Severity, event_privacy
from rules.config import RulesConfig
from rules.engine import Firing
from rules.model import Action, MessageAction, SnapshotAction, WebhookAction, WriteAction

if TYPE_CHECKING:
    from edge.runtime import Runtime

log = logging.getLogger("rules.actions")
SnapshotHook = Callable[[str, Firing], Awaitable[Any]]


def _privacy(value: Any) -> Privacy:
    try:
        return Privacy(value)
    except ValueError:
        return Privacy.PUBLIC


class RateLimit:
    __slots__ = ("capacity", "limited", "refill", "tokens", "updated")

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.tokens = float(per_minute)
        self.refill = per_minute / 60.0
        self.updated = time.monotonic()
        self.limited = False

    def take(self) -> bool:
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            self.limited = False
            return True
        return False

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.refill)
        self.updated = now

    def export(self) -> float:
        """The tokens left now (for persisting across a restart)."""
        self._refill()
        return self.tokens


class ActionRunner:
    def __init__(self, runtime: Runtime, config: RulesConfig) -> None:
        self.runtime = runtime
        self.hub = runtime.hub
        self.config = config
        self.snapshot_hook: SnapshotHook | None = None
        self._limits: dict[str, RateLimit] = {}
        # tokens left per rule when the gateway last stopped (or crashed): a restart does not hand
        # a rule a fresh minute's budget, so a crash loop cannot multiply its writes and webhooks
        self._saved: dict[str, tuple[float, float]] = {}  # rule -> (tokens, wall time)
        self.limits_dirty = False
        self._session: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.executed = 0
        self.failed = 0
        self.rate_limited: dict[str, int] = {}
        self.write_latency_ms: list[float] = []  # recent reading->write-issued latencies (bench)

    def actions_for(self, firing: Firing) -> list[tuple[str, Action, bool]]:
        """(where, action, cleared-notice) to run for a firing."""
        rule = firing.rule.rule
        if firing.kind in ("fired", "repeat"):
            return [(f"then[{i}]", a, False) for i, a in enumerate(rule.then)]
        if firing.kind == "cleared":
            out = [(f"else[{i}]", a, False) for i, a in enumerate(rule.else_)]
            if rule.notify == "toggle":
                out += [
                    (f"then[{i}]", a, True) for i, a in enumerate(rule.then) if a.kind in ("alert", "event")
                ]
            return out
        return []

    def dispatch(self, firing: Firing) -> None:
        """Called from the engine's callback: decide synchronously, execute in a task."""
        if firing.kind == "error":
            self._publish_soon(
                Event(
                    "rule_error",
                    firing.rule.id,
                    Severity.WARNING,
                    {"rule": firing.rule.id, "message": firing.error},
                    firing.ts,
                )
            )
            return
        actions = self.actions_for(firing)
        if not actions:
            return
        rid = firing.rule.id
        limit = self._limits.get(rid)
        if limit is None:
            per_min = firing.rule.rule.max_actions_per_minute or self.config.max_actions_per_minute
            limit = self._limits[rid] = RateLimit(per_min)
            saved = self._saved.pop(rid, None)
            if saved is not None:  # refilled for the time the gateway was down, at most full
                tokens, at = saved
                limit.tokens = min(
                    limit.capacity, max(0.0, tokens) + max(0.0, time.time() - at) * limit.refill
                )
        self.limits_dirty = True
        if not limit.take():
            self.rate_limited[rid] = self.rate_limited.get(rid, 0) + 1
            if not limit.limited:
                limit.limited = True
                self._publish_soon(
                    Event(
                        "rule_rate_limited",
                        rid,
                        Severity.WARNING,
                        {
                            "rule": rid,
                            "limit_per_minute": int(limit.capacity),
                            "dropped": self.rate_limited[rid],
                        },
                        firing.ts,
                    )
                )
            return
        task = asyncio.get_running_loop().create_task(self._run(firing, actions), name=f"rule:{rid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def export_limits(self) -> str:
        """Every rule's remaining budget as JSON (rules not limited yet keep their saved one)."""
        now = time.time()
        out = {rid: [round(tokens, 3), at] for rid, (tokens, at) in self._saved.items()}
        out.update({rid: [round(limit.export(), 3), now] for rid, limit in self._limits.items()})
        self.limits_dirty = False
        return json.dumps(out, sort_keys=True)

    def restore_limits(self, text: str | None) -> None:
        try:
            data = json.loads(text) if text else {}
            self._saved = {str(r): (float(v[0]), float(v[1])) for r, v in data.items()}
        except (ValueError, TypeError, IndexError, AttributeError):
            self._saved = {}  # unreadable: every rule starts with a full budget, as before

    def _publish_soon(self, event: Event) -> None:
        # dispatch runs inside the hub's fan-out: publishing there would nest an ingest and show
        # other subscribers this event before the batch that caused it
        asyncio.get_running_loop().call_soon(self.hub.publish_event, event)

    async def _run(self, firing: Firing, actions: list[tuple[str, Action, bool]]) -> None:
        for where, action, cleared in actions:
            try:
                await self._execute(firing, where, action, cleared)
                self.executed += 1
            except Exception as exc:
                self.failed += 1
                log.warning("rule %s action %s failed: %s", firing.rule.id, where, exc)
                self.hub.publish_event(
                    Event(
                        "rule_action_failed",
                        firing.rule.id,
                        Severity.WARNING,
                        {"rule": firing.rule.id, "action": where, "error": f"{type(exc).__name__}: {exc}"},
                        time.time(),
                    )
                )

    def _value(self, firing: Firing, where: str, spec: WriteAction) -> Any:
        if spec.expr is not None:
            return firing.rule.values[where](firing.args)
        return spec.value

    async def _execute(self, firing: Firing, where: str, action: Action, cleared: bool) -> None:
        rr = firing.rule
        spec = action.spec
        state = "cleared" if cleared or firing.kind == "cleared" else "fired"
        args = firing.args
        point, value = args[2], args[0]
        if action.kind == "write":
            assert isinstance(spec, WriteAction)
            self.write_latency_ms.append((time.time() - firing.ts) * 1000)
            if len(self.write_latency_ms) > 10_000:
                del self.write_latency_ms[:5000]
            target = spec.point.replace("{device}", str(args[3]))
            result = await self.hub.write(target, self._value(firing, where, spec), source=f"rule:{rr.id}")
            if not result.ok:
                raise RuntimeError(f"write {target} {result.status}: {result.reason}")
        elif action.kind == "set":
            assert isinstance(spec, WriteAction)
            self._set(
                spec.point.replace("{device}", str(args[3])), self._value(firing, where, spec), firing.ts
            )
        elif action.kind in ("alert", "event"):
            assert isinstance(spec, MessageAction)
            message = rr.message(args, state, spec.message)
            severity = spec.severity or rr.rule.severity
            if state == "cleared":
                severity = "info"
            payload: dict[str, Any] = {
                "rule": rr.id,
                "name": rr.rule.name or rr.id,
                "state": state,
                "message": message,
                "point": point,
                "value": value,
            }
            kind = "alert" if action.kind == "alert" else str(spec.kind)
            if action.kind == "event":
                payload = {**spec.payload, **payload}
            inherited = self._trigger_privacy(args)
            if PRIVACY_RANK[inherited] > PRIVACY_RANK[_privacy(payload.get("privacy"))]:
                # a message can quote what triggered it ("186/124 mmHg"): it is at least as private
                payload["privacy"] = str(inherited)
            self.hub.publish_event(Event(kind, rr.id, severity, payload, firing.ts))
        elif action.kind == "webhook":
            assert isinstance(spec, WebhookAction)
            await self._webhook(spec, firing, state)
        elif action.kind == "snapshot":
            assert isinstance(spec, SnapshotAction)
            if self.snapshot_hook is not None:
                await self.snapshot_hook(spec.camera, firing)
            else:  # outside a running site (no device to ask): journal the request instead
                self.hub.publish_event(
                    Event(
                        "snapshot_request",
                        rr.id,
                        Severity.INFO,
                        {"camera": spec.camera, "rule": rr.id},
                        firing.ts,
                    )
                )

    def _trigger_privacy(self, args: tuple[Any, ...]) -> Privacy:
        """The privacy class of the record that made the rule fire: an event's class (the rule
        the sinks apply), a reading's point's."""
        if args[7] is not None:
            return event_privacy(str(args[7]), args[10], self.hub.points)
        info = self.hub.points.get(str(args[2]))
        return info.privacy if info is not None else Privacy.PUBLIC

    def _set(self, point: str, value: Any, ts: float) -> None:
        if point not in self.hub.points:
            device, _, name = point.partition(".")
            ptype = (
                PointType.BOOL
                if isinstance(value, bool)
                else PointType.INT
                if isinstance(value, int)
                else PointType.STR
                if isinstance(value, str)
                else PointType.FLOAT
            )
            self.hub.register_points(
                [PointInfo(point, device, name, ptype, description="virtual point set by rules")]
            )
        self.hub.ingest([Reading(ts, point, value)])

    async def _webhook(self, spec: WebhookAction, firing: Firing, state: str) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        rr = firing.rule
        body = {
            "rule": rr.id,
            "name": rr.rule.name or rr.id,
            "state": state,
            "message": rr.message(firing.args, state, spec.message),
            "point": firing.args[2],
            "value": firing.args[0],
            "ts": firing.ts,
            "site": self.runtime.site.site.id,
        }
        timeout = aiohttp.ClientTimeout(total=spec.timeout or self.config.webhook_timeout)
        last = ""
        for attempt in range(spec.retries + 1):
            try:
                async with self._session.post(spec.url, json=body, timeout=timeout) as resp:
                    if resp.status < 300:
                        return
                    last = f"HTTP {resp.status}"
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        break  # the receiver refuses this body: retrying will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < spec.retries:
                await asyncio.sleep(min(30.0, 0.2 * 2**attempt))
        raise RuntimeError(f"webhook {spec.url} failed after {spec.retries + 1} attempts: {last}")

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
