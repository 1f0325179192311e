"""Executing what rules decide: writes, alerts/events, webhooks, virtual points, snapshots.

Each firing runs in its own task, so a slow webhook of one rule never delays another rule (nor
the engine, which only decides). A per-rule token bucket limits how many firings per minute
execute actions; the excess is dropped, counted per rule and reported once per burst as a
`rule_rate_limited` event. Every failed action is counted and journaled as `rule_action_failed`.

At stop, firings still running get `SHUTDOWN_GRACE` seconds to finish; what is still running then
is cancelled. The `alert`/`event` actions of a cancelled firing that had not run yet are journaled
then (they only write to the journal, which is still open), every other action not done is
counted (`cancelled`) and one `rule_actions_cancelled` event names the rules and the counts.

What a firing produces is as private as what it read (`rules.model.firing_privacy`): an alert
carries that class, and a virtual point written by `set:` takes it (a class only ever rises), so a
rule cannot copy a blood pressure into a public point. So do the records a firing leaves besides
its actions, which may quote what it read: its `rule_error` (the expression's exception quotes
operands), its `rule_action_failed` and the `command` event of its `write:` (the value written).
Its alerts and events, its `rule_error` and its `rule_action_failed` are about whom the record that
fired it names (a resident, a plate: `rules.store.args_subject`), and hold that subject beside
their fields (`edge.privacy.payload.SubjectPayload`): the journal seals them under that subject's
key, so forgetting the resident or plate shreds them with the record, and no recipient receives
the reference. A failed action of a firing above public is logged without its reason, which can
quote what the firing read (the log reaches journald, beyond every class and retention); its
`rule_action_failed` event keeps the reason, at the firing's class.
Virtual points and their classes are kept in
the state database and registered again when the runner is created at start-up, before any
consumer reads the journal: values journaled before a restart keep their class. `set:` writes
virtual points only: a point of a device the site configures (registered or not yet) or that a
driver registered is refused when the rule is stored
(`rules.model.set_target_problems`) and here (the action fails, counted), so a rule can neither
forge a device's readings nor raise a device point's class.

Webhooks post only to destinations `rules.webhook_allow` names, checked again here at send time:
the name must resolve to an address that is not loopback, link-local, multicast or unspecified
unless the allow-list names that exact address, and the connection goes to the address checked.
A failed post is journaled as "webhook to HOST failed" whatever the cause (refused, timeout, DNS,
TLS), so rule authors cannot map the network through the errors; the cause goes to the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from edge.hub import coerce_value
from edge.model import (
    PRIVACY_RANK,
    Event,
    PointInfo,
    PointType,
    Privacy,
    Reading,
    Severity,
)
from edge.privacy.payload import SITE_SUBJECT, SubjectPayload
from rules.config import RulesConfig, normal_host, parse_allow_entry, webhook_allowed
from rules.engine import Firing
from rules.model import (
    Action,
    MessageAction,
    SetAction,
    SnapshotAction,
    WebhookAction,
    WriteAction,
    configured_device,
    firing_privacy,
    reads_privacy,
    set_target_refused,
    webhook_target,
)
from rules.store import RuleStore, args_subject

if TYPE_CHECKING:
    from edge.plugins import ComponentContext

log = logging.getLogger("rules.actions")
VIRTUAL_POINTS = "virtual_points"  # rules_meta key: {point id: [type, privacy class]}
SnapshotHook = Callable[[str, Firing], Awaitable[Any]]
#: seconds the firings still running at stop may take to finish before they are cancelled: well
#: inside the service's stop timeout (deploy/systemd: TimeoutStopSec=20s), which the other
#: components' stop shares
SHUTDOWN_GRACE = 3.0
JOURNAL_ONLY = ("alert", "event")  # actions that only journal: still written when a firing is cancelled


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


class _Flight:
    """A firing whose actions run in a task: `at` is the index of the action running or next;
    `first_fired` the time its incident first fired (see `ActionRunner.first_fired`)."""

    __slots__ = ("actions", "at", "firing", "first_fired")

    def __init__(
        self, firing: Firing, actions: list[tuple[str, Action, bool]], first_fired: float | None = None
    ) -> None:
        self.firing = firing
        self.actions = actions
        self.at = 0
        self.first_fired = first_fired


class ActionRunner:
    def __init__(self, ctx: ComponentContext, config: RulesConfig) -> None:
        self.site_id = ctx.site.site.id
        self.hub = ctx.hub
        self.config = config
        self.snapshot_hook: SnapshotHook | None = None
        self._limits: dict[str, RateLimit] = {}
        #: rule id -> ((the hub's registration counter, the compiled rule), the class of the points
        #: it reads): a rule that computes which point it reads would otherwise scan every point
        #: of the hub on the event loop for each action
        self._reads: dict[str, tuple[tuple[int, Any], Privacy]] = {}
        # tokens left per rule when the gateway last stopped (or crashed): a restart does not hand
        # a rule a fresh minute's budget, so a crash loop cannot multiply its writes and webhooks
        self._saved: dict[str, tuple[float, float]] = {}  # rule -> (tokens, wall time)
        self.limits_dirty = False
        self._session: Any = None
        self._tasks: dict[asyncio.Task[Any], _Flight] = {}
        self.executed = 0
        self.failed = 0
        self.cancelled = 0  # actions not done because the gateway stopped while they ran or waited
        self.shutdown_grace = SHUTDOWN_GRACE
        self.closing = False
        self.rate_limited: dict[str, int] = {}
        self.write_latency_ms: list[float] = []  # recent reading->write-issued latencies (bench)
        #: rule id -> the class of the firing whose error the rule shows (`error_privacy`)
        self._error_class: dict[str, Privacy] = {}
        self._meta = RuleStore(ctx.state)
        self._virtual: dict[str, list[str]] = {}
        #: the devices the site file configures: `set:` writes none of their points, registered or
        #: not yet (a BLE device's default map registers at its first packet)
        self._devices = frozenset(d.id for d in ctx.site.devices)
        #: (rule id, key) -> when the key's current incident first fired: its repeats name it
        self._incidents: dict[tuple[str, str], float] = {}
        self._restore_virtual_points()

    def _restore_virtual_points(self) -> None:
        """Register the virtual points of earlier runs with their classes (before the sinks and
        the pull API start reading the journal, which holds their earlier values)."""
        raw = self._meta.meta(VIRTUAL_POINTS) if self._meta is not None else None
        try:
            saved = {str(k): (PointType(v[0]), Privacy(v[1])) for k, v in json.loads(raw or "{}").items()}
        except (ValueError, TypeError, IndexError, AttributeError):
            log.error("the saved classes of rule-set points are unreadable; they register again when set")
            return
        for point, (ptype, privacy) in saved.items():
            if self.driver_point(point) is not None:  # registered before this runs, or to come
                # a device's point, set by a rule of an earlier version: it stays its driver's
                log.warning("point %s is a device's point: rules no longer set it", point)
                continue
            self._virtual[point] = [str(ptype), str(privacy)]
            self._register(point, ptype, privacy)

    def driver_point(self, point: str) -> str | None:
        """The device of `point` when it is a device's point, which a `set:` may not write: of a
        device the site configures (registered or not yet), or registered by a driver (not a
        virtual point of the rules)."""
        if (device := configured_device(point, self._devices)) is not None:
            return device
        info = self.hub.points.get(point)
        return info.device if info is not None and point not in self._virtual else None

    def error_privacy(self, rule_id: str) -> Privacy:
        """The class of the firing whose error rule `rule_id` shows now (its message may quote
        what that firing read)."""
        return self._error_class.get(rule_id, Privacy.PUBLIC)

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

    def first_fired(self, firing: Firing) -> float | None:
        """When the incident `firing` belongs to first fired: its own time for a first firing;
        for a repeat (`notify: repeat`), the first firing's, so that its alert names the alert it
        repeats and is never taken for a new incident. Called in order for every firing, at
        dispatch: the engine's state of the key may be gone by the time an action runs (a repeat
        and a clear in one batch)."""
        rr = firing.rule
        if rr.always or firing.kind == "error":
            return firing.ts if firing.kind == "fired" else None
        ident = (rr.id, firing.key)
        if firing.kind == "fired":
            self._incidents[ident] = firing.ts
            return firing.ts
        if firing.kind == "cleared":
            self._incidents.pop(ident, None)
            return None
        first = self._incidents.get(ident)
        if first is None or first > firing.ts:
            # first fired before this start: the engine keeps since when the key is active
            st = rr.states.get(firing.key)
            first = st.since if st is not None and st.phase == "active" else None
            if first is None or first > firing.ts:
                return None
            self._incidents[ident] = first
        return first

    def dispatch(self, firing: Firing) -> None:
        """Called from the engine's callback: decide synchronously, execute in a task."""
        first_fired = self.first_fired(firing)
        if firing.kind == "error":
            klass = self._error_class[firing.rule.id] = self._firing_privacy(firing.rule, firing.args)
            payload = self._about(firing, _classed({"rule": firing.rule.id, "message": firing.error}, klass))
            self._publish_soon(Event("rule_error", firing.rule.id, Severity.WARNING, payload, firing.ts))
            return
        actions = self.actions_for(firing)
        if not actions:
            return
        rid = firing.rule.id
        per_min = firing.rule.rule.max_actions_per_minute or self.config.max_actions_per_minute
        limit = self._limits.get(rid)
        if limit is None or limit.capacity != per_min:
            limit = self._limits[rid] = self._new_limit(rid, per_min, limit)
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
        flight = _Flight(firing, actions, first_fired)
        task = asyncio.get_running_loop().create_task(self._run(flight), name=f"rule:{rid}")
        self._tasks[task] = flight
        task.add_done_callback(self._forget)

    def _new_limit(self, rid: str, per_min: int, old: RateLimit | None) -> RateLimit:
        """The bucket of a rule firing for the first time since start, or whose limit was edited.

        Edited: the firings of the last minute count against the new limit (what was spent of the
        old bucket is spent of the new one), so lowering the limit of a runaway rule stops it at
        once and raising it frees the difference at once; both refill at the new rate."""
        limit = RateLimit(per_min)
        if old is not None:
            limit.tokens = max(0.0, limit.capacity - (old.capacity - old.export()))
            return limit
        saved = self._saved.pop(rid, None)
        if saved is not None:  # refilled for the time the gateway was down, at most full
            tokens, at = saved
            limit.tokens = min(limit.capacity, max(0.0, tokens) + max(0.0, time.time() - at) * limit.refill)
        return limit

    def forget_rule(self, rule_id: str) -> None:
        """A deleted rule's bucket (live and persisted) goes with it: a rule created later under
        the same id starts with a full budget."""
        dropped = self._limits.pop(rule_id, None) is not None
        dropped = self._saved.pop(rule_id, None) is not None or dropped
        self._reads.pop(rule_id, None)
        self._error_class.pop(rule_id, None)
        for ident in [i for i in self._incidents if i[0] == rule_id]:
            del self._incidents[ident]
        if dropped:
            self.limits_dirty = True  # written with the next state flush (at the latest at stop)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)

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

    async def _run(self, flight: _Flight) -> None:
        firing = flight.firing
        for i, (where, action, cleared) in enumerate(flight.actions):
            flight.at = i
            try:
                await self._execute(firing, where, action, cleared, flight.first_fired)
                self.executed += 1
            except Exception as exc:
                self._failed(firing, where, action, exc)
        flight.at = len(flight.actions)

    def _failed(self, firing: Firing, where: str, action: Action, exc: Exception) -> None:
        self.failed += 1
        # the error can quote the value the firing computed ("'121/71 r-0298' is not a valid ...")
        klass = self._firing_privacy(firing.rule, firing.args)
        if PRIVACY_RANK[klass] > PRIVACY_RANK[Privacy.PUBLIC]:
            # the log goes to journald, beyond the classes and their retention: what a technician
            # acts on (rule, action, target, what kind of failure), not the text
            log.warning(
                "rule %s action %s (%s) failed: %s (the reason is withheld: the firing read %s "
                "records; its rule_action_failed event keeps it)",
                firing.rule.id,
                where,
                _target(action, firing.args),
                _reason_kind(exc),
                klass,
            )
        else:
            log.warning("rule %s action %s failed: %s", firing.rule.id, where, exc)
        payload = {"rule": firing.rule.id, "action": where, "error": f"{type(exc).__name__}: {exc}"}
        self.hub.publish_event(
            Event(
                "rule_action_failed",
                firing.rule.id,
                Severity.WARNING,
                self._about(firing, _classed(payload, klass)),
                time.time(),
            )
        )

    def _about(self, firing: Firing, payload: dict[str, Any]) -> dict[str, Any]:
        """`payload` of a record `firing` leaves, holding (beside its fields) the subject the record
        that fired it names, under whose key the journal then seals it; as it is when that record
        names no one."""
        subject, _ = args_subject(firing.args, self.hub.private_ranks)
        return payload if subject == SITE_SUBJECT else SubjectPayload(payload, subject)

    def _value(self, firing: Firing, where: str, spec: WriteAction) -> Any:
        if spec.expr is not None:
            return firing.rule.values[where](firing.args)
        return spec.value

    async def _execute(
        self, firing: Firing, where: str, action: Action, cleared: bool, first_fired: float | None = None
    ) -> None:
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
            value = self._value(firing, where, spec)
            # the command event quotes the value: as private as the firing, if more than its point
            klass = self._firing_privacy(rr, args)
            info = self.hub.points.get(target)
            above = PRIVACY_RANK[klass] > PRIVACY_RANK[info.privacy if info is not None else Privacy.PUBLIC]
            result = await self.hub.write(
                target, value, source=f"rule:{rr.id}", privacy=klass if above else None
            )
            if not result.ok:
                raise WriteFailed(target, str(result.status), result.reason)
        elif action.kind == "set":
            assert isinstance(spec, SetAction)
            self._set(
                spec.point.replace("{device}", str(args[3])),
                self._value(firing, where, spec),
                firing.ts,
                self._firing_privacy(rr, args),
                spec.type,
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
            if kind == "alert" and state == "fired":
                # a repeat is told from a new incident by these two: the KPIs count an incident once
                payload["repeat"] = firing.kind == "repeat"
                if first_fired is not None:
                    payload["first_fired"] = first_fired
            inherited = self._firing_privacy(rr, args)
            if PRIVACY_RANK[inherited] > PRIVACY_RANK[_privacy(payload.get("privacy"))]:
                # a message can quote what triggered it ("186/124 mmHg"): it is at least as private
                payload["privacy"] = str(inherited)
            self.hub.publish_event(Event(kind, rr.id, severity, self._about(firing, payload), firing.ts))
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

    def _register(self, point: str, ptype: PointType, privacy: Privacy) -> PointInfo:
        """The point registered as `ptype` at `privacy` at least (a point's class never goes down:
        earlier values of it, journaled and shown, may have come from the more private input)."""
        info = self.hub.points.get(point)
        if info is None:
            info = _virtual_point(point, ptype, privacy)
        elif info.type != ptype or PRIVACY_RANK[privacy] > PRIVACY_RANK[info.privacy]:
            if info.type != ptype:  # a set action's `type:` says so
                log.warning(
                    "point %s is now of type %s (was %s): its set action declares it", point, ptype, info.type
                )
            if PRIVACY_RANK[privacy] > PRIVACY_RANK[info.privacy]:
                log.warning("point %s is now %s: rule input of that class was set into it", point, privacy)
            else:
                privacy = info.privacy
            info = dataclasses.replace(info, type=ptype, privacy=privacy)
        else:
            return info
        self.hub.register_points([info])
        return info

    def _firing_privacy(self, rr: Any, args: tuple[Any, ...]) -> Privacy:
        key = (self.hub.points_version, rr.compiled)  # a rule saved again is compiled anew
        cached = self._reads.get(rr.id)
        if cached is None or cached[0] != key:
            cached = (key, reads_privacy(rr.compiled, self.hub.points))
            self._reads[rr.id] = cached
        return firing_privacy(rr.compiled, args, self.hub.points, cached[1])

    def _set(
        self, point: str, value: Any, ts: float, privacy: Privacy, declared: PointType | None = None
    ) -> None:
        """Write a virtual point whose value is derived from data of class `privacy`, converted to
        the point's type: `declared` (the action's `type:`), else the type it has, else that of
        this first value. A value that does not convert (2.5 for an int point, NaN, no value) is
        refused with ValueError, so the action fails and is counted; the point keeps its last
        value. An int for a float point goes in as a float: a receiver such as InfluxDB keeps
        one type per field and refuses the other."""
        if (device := self.driver_point(point)) is not None:
            raise ValueError(set_target_refused(point, device))
        info = self.hub.points.get(point)
        ptype = declared or (info.type if info is not None else _type_of(value))
        if value is None:
            raise ValueError(f"the expression gave no value for {point}; it keeps its last value")
        value = coerce_value(
            info if info is not None and info.type == ptype else _virtual_point(point, ptype, privacy), value
        )
        if info is None or info.type != ptype or PRIVACY_RANK[privacy] > PRIVACY_RANK[info.privacy]:
            info = self._register(point, ptype, privacy)
            self._virtual[point] = [str(info.type), str(info.privacy)]
            if self._meta is not None:  # rare: a new point, a declared type, a class that rose
                self._meta.set_meta(VIRTUAL_POINTS, json.dumps(self._virtual, sort_keys=True))
        self.hub.ingest([Reading(ts, point, value)])

    async def _webhook(self, spec: WebhookAction, firing: Firing, state: str) -> None:
        host, port = webhook_target(spec.url)
        allow = self.config.webhook_allow
        if not webhook_allowed(allow, host, port):  # saved before the allow-list changed
            raise RuntimeError(f"webhook to {host} refused: rules.webhook_allow does not name it")
        failed = f"webhook to {host} failed"
        if not _address_allowed(host, allow):
            log.warning("webhook to %s refused: a loopback/link-local/multicast/unspecified address", host)
            raise RuntimeError(failed)
        if self._session is None:
            self._session = aiohttp.ClientSession(  # an answer is never read: never unpacked either
                connector=aiohttp.TCPConnector(resolver=CheckedResolver(allow)), auto_decompress=False
            )
        rr = firing.rule
        body = {
            "rule": rr.id,
            "name": rr.rule.name or rr.id,
            "state": state,
            "message": rr.message(firing.args, state, spec.message),
            "point": firing.args[2],
            "value": firing.args[0],
            "ts": firing.ts,
            "site": self.site_id,
        }
        timeout = aiohttp.ClientTimeout(total=spec.timeout or self.config.webhook_timeout)
        status = ""
        retries = self.config.webhook_retries if spec.retries is None else spec.retries
        for attempt in range(retries + 1):
            try:
                # no redirects: a 3xx would send the post to a destination nobody allowed
                async with self._session.post(
                    spec.url, json=body, timeout=timeout, allow_redirects=False
                ) as resp:
                    if resp.status < 300:
                        return
                    status = f": HTTP {resp.status}"
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        break  # the receiver refuses this body: retrying will not help
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                # refused, timed out, unresolvable, TLS: one message for all in the journal,
                # which rule authors read; the cause only in the gateway log
                status = ""
                log.warning(
                    "rule %s webhook %s attempt %d: %s: %s",
                    rr.id,
                    spec.url,
                    attempt + 1,
                    type(exc).__name__,
                    exc,
                )
            if attempt < retries:
                await asyncio.sleep(min(30.0, 0.2 * 2**attempt))
        raise RuntimeError(failed + status)

    async def close(self) -> None:
        """Let the firings still running finish within `shutdown_grace` seconds, then cancel the
        rest: their `alert`/`event` actions not run yet are journaled now, every other action not
        done is counted and reported in one `rule_actions_cancelled` event (the journal is still
        open: the runtime closes it after its components)."""
        self.closing = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.shutdown_grace)
        flights = list(self._tasks.items())
        for task, _ in flights:
            task.cancel()
        await asyncio.gather(*(task for task, _ in flights), return_exceptions=True)
        await self._finish_cancelled([flight for _, flight in flights])
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _finish_cancelled(self, flights: list[_Flight]) -> None:
        """For firings cancelled at stop: journal the `alert`/`event` actions not run yet (in
        their order), count the other actions not done, and report them in one event."""
        per_rule: dict[str, int] = {}
        firings = written = 0
        for flight in flights:
            firing, cancelled = flight.firing, 0
            # an alert/event never waits, so the action at `at` is one in flight only if it is
            # of another kind: that one and every later one not journal-only are not done
            for where, action, cleared in flight.actions[flight.at :]:
                if action.kind not in JOURNAL_ONLY:
                    cancelled += 1
                    continue
                try:
                    await self._execute(firing, where, action, cleared, flight.first_fired)
                    self.executed += 1
                    written += 1
                except Exception as exc:
                    self._failed(firing, where, action, exc)
            if cancelled:
                firings += 1
                per_rule[firing.rule.id] = per_rule.get(firing.rule.id, 0) + cancelled
        total = sum(per_rule.values())
        if not total:
            return
        self.cancelled += total
        log.warning(
            "stopping: %d rule action(s) of %d firing(s) cancelled after %.1f s: %s",
            total,
            firings,
            self.shutdown_grace,
            ", ".join(f"{rid} ({n})" for rid, n in sorted(per_rule.items())),
        )
        payload = {
            "rules": sorted(per_rule),
            "cancelled": total,
            "per_rule": dict(sorted(per_rule.items())),
            "firings": firings,
            "journaled_at_stop": written,
            "grace_s": self.shutdown_grace,
        }
        self.hub.publish_event(
            Event("rule_actions_cancelled", "rules", Severity.WARNING, payload, time.time())
        )


def _forbidden_address(addr: str) -> bool:
    """Loopback, link-local, multicast or unspecified: the gateway itself and its segment's
    infrastructure, which no rule may reach unless the allow-list names the address."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified


def _named_exactly(addr: str, allow: Sequence[str]) -> bool:
    addr = normal_host(addr.split("%", 1)[0])
    return any(parse_allow_entry(entry)[0] == addr for entry in allow)


def _address_allowed(host: str, allow: Sequence[str]) -> bool:
    """For a host that is an IP address: whether it may be posted to (names are judged when they
    resolve, by `CheckedResolver`)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return not _forbidden_address(host) or _named_exactly(host, allow)


class CheckedResolver(AbstractResolver):
    """The webhooks' DNS resolver: resolves as usual, then drops every address a rule may not
    reach; the connection then goes to an address checked here (not to a second lookup that
    could answer differently)."""

    def __init__(self, allow: Sequence[str]) -> None:
        from aiohttp.resolver import DefaultResolver

        self._allow = list(allow)
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [
            r for r in found if not _forbidden_address(r["host"]) or _named_exactly(r["host"], self._allow)
        ]
        if not kept:
            # the HTTP client reports this as a DNS failure without the reason: log it here
            why = f"{host} resolves only to addresses no webhook may reach: {[r['host'] for r in found]}"
            log.warning("webhook refused: %s", why)
            raise OSError(why)
        return kept

    async def close(self) -> None:
        await self._inner.close()


class WriteFailed(RuntimeError):
    """A rule's write the hub did not complete; `status` (rejected, failed, timeout) says how
    without the reason, which may quote the value written."""

    def __init__(self, target: str, status: str, reason: str) -> None:
        super().__init__(f"write {target} {status}: {reason}")
        self.status = status


def _target(action: Action, args: tuple[Any, ...]) -> str:
    """What an action acts on, in words that quote no value: `write door-1.limit`,
    `set site.note`, `snapshot cam-gate`, `webhook`, `alert`."""
    spec = action.spec
    if isinstance(spec, WriteAction | SetAction):
        return f"{action.kind} {spec.point.replace('{device}', str(args[3]))}"
    if isinstance(spec, SnapshotAction):
        return f"snapshot {spec.camera}"
    return str(action.kind)


def _reason_kind(exc: Exception) -> str:
    """What kind of failure `exc` is, without its text: `ValueError`, `write rejected`."""
    if isinstance(exc, WriteFailed):
        return f"write {exc.status}"
    return type(exc).__name__


def _classed(payload: dict[str, Any], klass: Privacy) -> dict[str, Any]:
    """`payload` of a record a firing of class `klass` left, classed so when above public (a
    payload without `privacy` and `point` is public to the sinks and the views)."""
    if PRIVACY_RANK[klass] > PRIVACY_RANK[Privacy.PUBLIC]:
        payload["privacy"] = str(klass)
    return payload


def _virtual_point(point: str, ptype: PointType, privacy: Privacy) -> PointInfo:
    device, _, name = point.partition(".")
    return PointInfo(point, device, name, ptype, privacy=privacy, description="virtual point set by rules")


def _type_of(value: Any) -> PointType:
    if isinstance(value, bool):
        return PointType.BOOL
    if isinstance(value, int):
        return PointType.INT
    return PointType.STR if isinstance(value, str) else PointType.FLOAT
