"""The evaluation core: trigger index, windows, per-key rule state, timers — no I/O.

`Engine.process(records)` takes journaled records (live from the hub, or replayed from a
journal/file) and returns `Firing`s; it never executes actions and never touches a database, so
the live component, the dry-run API and `edge rules test` share exactly this code. Time is the
records' time: `for:` timers, repeats, dead-man deadlines and schedules fire when a record with a
later timestamp arrives or when the owner calls `advance(now)`.

Each rule keeps one state per key (the point id for point and no_data triggers, the event source
for event triggers, "" for schedules): ok -> pending (`for:`) -> active -> ok. A reading is routed
through `_route[point]` (rules, windows, dead-man watches), built once per point, so its cost is
O(rules that care about that point).

Evaluation has a budget. The expression compiler bounds every value an expression builds
(`rules.guards.LimitExceeded`: the rule goes to `error` and is evaluated again on the next record,
cheaply, since the check comes before the work). Time is bounded on top of that for expressions
with size-dependent operations (`Compiled.cost > 0`; plain comparisons and arithmetic are never
timed, which keeps the hot path at compiled-lambda speed): each call is timed with the monotonic
clock, and a rule whose evaluations take longer than `eval_budget` seconds twice in a row goes to
`error` and is suspended — no longer evaluated until it is saved again or the gateway restarts.
Two in a row, so one evaluation that a busy machine or a garbage collection happened to stretch
does not stop a rule.

Many evaluations each under that limit can still take the event loop (a few milliseconds each on a
point that reports hundreds of times a second). So, when `loop_share` is set (the live gateway sets
it; a replay runs as fast as it can and leaves it off), the same timings also feed a per-rule
budget of wall-clock time: a rule's timed evaluations may use `loop_share` of the time (LOOP_SHARE:
100 ms per second) averaged over `loop_window` (5 s): at most 500 ms in a window that starts with
an evaluation and lasts 5 s (no extra clock reads: the window is judged by the evaluation's own
timestamps). A rule past it goes to `error` and is suspended like a slow one, with the time it used
and over how long in the message.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from edge.model import Event, Reading
from rules.guards import LimitExceeded, safe_builtins
from rules.model import CompiledRule
from rules.state import TS, Args, Firing, KeyState, RuleRuntime
from rules.windows import EMPTY, Window

Route = tuple[
    tuple[tuple[Callable[..., Any], dict[str, "KeyState"], "RuleRuntime"], ...],
    tuple["RuleRuntime", ...],
    bool,
    tuple[str, str],
    list[Window],
    list[tuple["RuleRuntime", float]],
    int,
]

#: a rule on the hot path: (its condition, its states, the rule), one tuple per rule, shared by
#: the routes of every point it is on
FastEntry = tuple[Callable[..., Any], dict[str, "KeyState"], "RuleRuntime"]
#: (trigger pattern -> its rules, dead-man pattern -> its watches): see `Engine._patterns`
PatternIndex = tuple[
    list[tuple[re.Pattern[str], list[tuple[int, "RuleRuntime", tuple[float, ...], FastEntry]]]],
    list[tuple[re.Pattern[str], list[tuple[int, int, "RuleRuntime", float]]]],
]

EVAL_BUDGET_S = 0.05  # one evaluation of a timed expression (see the module docstring)
STRIKES = 2  # evaluations over budget in a row that suspend a rule
# Share of wall-clock time one rule's timed evaluations may use, averaged over LOOP_WINDOW_S (see the
# module docstring): 100 ms per second, a tenth of the one core the event loop runs on, so one rule
# cannot starve the API, ingest and the other rules; a timed expression on ordinary values costs a
# few microseconds, a few ms per second even at 1,000 readings/s.
LOOP_SHARE = 0.1
LOOP_WINDOW_S = 5.0
#: the LimitExceeded kinds that suspend a rule: one evaluation too slow, or too many too often
SUSPENDING = ("time", "loop share")
#: the state key that keeps a `notify: always` rule's last firing (no point or device has it)
ALWAYS_KEY = "*"


class Engine:
    def __init__(self, tz: dt.tzinfo = dt.UTC) -> None:
        self.tz = tz
        self.rules: dict[str, RuleRuntime] = {}
        self.windows: dict[tuple[str, float], Window] = {}
        self.latest: dict[str, Reading] = {}
        self.now = 0.0  # the latest record/timer time seen
        self.dirty: set[tuple[str, str]] = set()  # (rule, key) whose state changed: to persist
        self.evaluations = 0
        self._route: dict[str, Route] = {}
        self._pattern_index: PatternIndex | None = None
        self._event_route: dict[str, tuple[RuleRuntime, ...]] = {}
        self._timers: list[tuple[float, int, str, str, str]] = []  # (deadline, n, rule, key, kind)
        self._counter = itertools.count()
        self._nodata_seen: dict[tuple[str, str], float] = {}  # (rule, point) -> last good reading ts
        self.eval_budget = EVAL_BUDGET_S
        # share of wall-clock time a rule's timed evaluations may use (None: no limit, as in a
        # replay); set before rules are added, as eval_budget
        self.loop_share: float | None = None
        self.loop_window = LOOP_WINDOW_S
        #: a repeat overdue by a whole `every` or more (the gateway was stopped, the clock stepped)
        #: runs once, at `now` and stamped with it, and the next one `every` after `now`: a live
        #: gateway (the component sets it) sends no burst of the repeats it missed. A replay
        #: (False) runs each at its own deadline
        self.one_late_repeat = False
        self.suspended: dict[str, str] = {}  # rule id -> why: over its time budget, not evaluated
        self.loop_share_suspensions = 0  # rules suspended for using more than their loop share
        self._scheduled: set[str] = set()  # rules with a schedule trigger
        #: whether a point exists on the site (a running gateway's hub): p('dev.point') of a point
        #: named in the rule, without a value, that does not exist fails naming it, instead of
        #: giving None to a comparison that fails without the name. None (a replay, a dry run),
        #: and a computed p(device + '.x'): None
        self.known_point: Callable[[str], bool] | None = None
        self.env = self._make_env()

    # ------------------------------------------------------------ helpers for expressions
    def _make_env(self) -> dict[str, Any]:
        env = safe_builtins()
        windows, latest, tz = self.windows, self.latest, self.tz

        def _win(point: str, seconds: float) -> Any:
            return windows.get((point, seconds), EMPTY)

        engine = self

        def _p(point: str) -> Any:
            hit = latest.get(point)
            return hit[2] if hit else None

        def _p_named(point: str) -> Any:
            """p('dev.point') of a point named in the rule: one the site does not have is a
            misspelt id, named in the rule's error (a computed p() asks whether it is there)."""
            hit = latest.get(point)
            if hit:
                return hit[2]
            known = engine.known_point
            if known is not None and not known(point):
                raise UnknownPoint(point)
            return None

        def _age(point: str, ts: float) -> float:
            hit = latest.get(point)
            return ts - hit[0] if hit else math.inf

        def _local(ts: float) -> dt.datetime:
            return dt.datetime.fromtimestamp(ts, tz)

        def _between(a: int, b: int, ts: float) -> bool:
            t = _local(ts)
            m = t.hour * 60 + t.minute
            return a <= m < b if a <= b else (m >= a or m < b)

        env.update(
            _win=_win,
            _p=_p,
            _p_named=_p_named,
            _age=_age,
            _hour=lambda ts: _local(ts).hour,
            _minute=lambda ts: _local(ts).minute,
            _weekday=lambda ts: _local(ts).weekday(),  # Monday = 0, as Python
            _between=_between,
        )
        return env

    # ------------------------------------------------------------ rules
    def add(self, compiled: CompiledRule, now: float | None = None) -> RuleRuntime:
        """Add or replace a rule (its states start fresh unless restored afterwards)."""
        self.remove(compiled.rule.id)
        rr = RuleRuntime(compiled, self.env, self.tz)
        self._time(rr)
        self.rules[rr.id] = rr
        for expr in (compiled.cond, compiled.clear, *compiled.exprs.values()):
            for point, secs in expr.windows if expr else ():
                if point is not None:
                    self._window(point, secs)
        self._unroute(rr)
        self._event_route.clear()
        rr.schedule_token = f"@{next(self._counter)}"
        if rr.schedules:
            self._scheduled.add(rr.id)
        if rr.rule.enabled:
            start = self.now if now is None else now
            for cron in rr.schedules:
                self._push(cron.next_after(start, self.tz), rr.id, rr.schedule_token, "schedule")
        return rr

    def replace(self, compiled: CompiledRule) -> RuleRuntime:
        """Swap in a new version of a rule whose logic did not change (`rules.model.same_logic`),
        keeping its states, timers, dead-man watches and windows: a pending `for:` fires at its
        original deadline and an active alert stays active without firing again."""
        old = self.rules.get(compiled.rule.id)
        if old is None:
            return self.add(compiled)
        rr = RuleRuntime(compiled, self.env, self.tz)
        self._time(rr)
        rr.states, rr.last_fired, rr.error, rr.error_ts = old.states, old.last_fired, old.error, old.error_ts
        rr.evaluations = old.evaluations
        rr.schedule_token = old.schedule_token  # its queued schedule timers stay valid
        self.rules[rr.id] = rr
        if self.suspended.pop(rr.id, None) is not None:  # saved again: evaluated again
            self._rearm(rr)
        for expr in compiled.exprs.values():  # actions may bring new windows; the condition's stay
            for point, secs in expr.windows:
                if point is not None:
                    self._window(point, secs)
        self._unroute(old)  # the routes hold the old version's functions
        self._unroute(rr)
        self._event_route.clear()
        return rr

    def remove(self, rule_id: str, drop_windows: bool = False) -> None:
        """Stop running a rule; with `drop_windows` (the rule is deleted, not replaced) also drop
        the windows over named points that no other rule reads, so they no longer take memory."""
        self.suspended.pop(rule_id, None)
        self._scheduled.discard(rule_id)
        old = self.rules.pop(rule_id, None)
        if old is not None:
            self._unroute(old)
            self._event_route.clear()
            if drop_windows:
                self._drop_windows(old)
            for k in [k for k in self._nodata_seen if k[0] == rule_id]:
                del self._nodata_seen[k]

    def _drop_windows(self, gone: RuleRuntime) -> None:
        named = {key for key in _named_windows(gone.compiled)}
        if not named:
            return
        for rr in self.rules.values():
            named -= _named_windows(rr.compiled)
        for key in named:
            if self.windows.pop(key, None) is not None:
                self._route.pop(key[0], None)

    def _window(self, point: str, secs: float) -> None:
        """The window (point, secs), created if new: the point's route lists its windows."""
        if (point, secs) not in self.windows:
            self.windows[(point, secs)] = Window(secs)
            self._route.pop(point, None)

    def _unroute(self, rr: RuleRuntime, rules_changed: bool = True) -> None:
        """Drop the routes `rr` is part of, or would be: those of the points its triggers or
        dead-man watches match; they are built again, with the rules of today, at their point's
        next reading. One rule saved costs a match of its patterns per routed point, not a rebuild
        of every point's route against every rule."""
        if rules_changed:  # else only how the rule is routed changed (its error, its suspension)
            self._pattern_index = None
        patterns = (*rr.points, *(rx for rx, _ in rr.no_data))
        if not patterns:
            return
        route = self._route
        for point in [p for p in route if any(rx.match(p) for rx in patterns)]:
            del route[point]

    def _rearm(self, rr: RuleRuntime) -> None:
        """Arm the timers of a rule coming out of suspension (`advance` dropped all but its
        schedule meanwhile), as `restore` does after a restart; a timer that was not dropped finds
        its state moved on and does nothing."""
        self._rearm_states(rr)
        for k in [k for k in self._nodata_seen if k[0] == rr.id]:
            del self._nodata_seen[k]  # the next reading starts the dead-man watch again

    def _rearm_states(self, rr: RuleRuntime) -> None:
        """Push the timers of the rule's pending `for:`s and active repeats."""
        for key, st in rr.states.items():
            if st.phase == "pending" and st.since is not None:
                self._push(st.since + rr.for_s, rr.id, key, "for")
            elif st.phase == "active" and rr.rule.notify == "repeat" and st.last_notified is not None:
                self._push(st.last_notified + rr.every, rr.id, key, "repeat")

    def _time(self, rr: RuleRuntime) -> None:
        """Time the rule's expressions that have size-dependent operations (see the module
        docstring); the others keep their bare compiled function."""
        strikes = [0]  # shared by the rule's expressions: it is the rule that is suspended
        budget, clock = self.eval_budget, time.perf_counter

        def over_budget(spent: float) -> None:
            if spent <= budget:
                strikes[0] = 0
            else:
                strikes[0] += 1
                if strikes[0] >= STRIKES:
                    raise LimitExceeded(
                        "time",
                        f"evaluations took {spent * 1000:.0f} ms, {STRIKES} in a row over the "
                        f"limit of {budget * 1000:g} ms; the rule is suspended until it is saved again",
                    )

        share = self.loop_share
        if not share:

            def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
                def run(args: Any) -> Any:
                    start = clock()
                    try:
                        return fn(args)
                    finally:  # an evaluation ending in an error took its time too; the verdict replaces both
                        spent = clock() - start
                        if spent > budget or strikes[0]:
                            over_budget(spent)

                return run

        else:
            window = self.loop_window
            allowance = share * window
            # shared by the rule's expressions: the time they used in the current window, and when
            # that window ends (it starts with the first evaluation after the last one ended)
            used, ends = 0.0, clock() + window

            def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
                def run(args: Any) -> Any:
                    nonlocal used, ends
                    start = clock()
                    try:
                        return fn(args)
                    finally:
                        end = clock()
                        spent = end - start
                        if spent > budget or strikes[0]:
                            over_budget(spent)
                        if end < ends:
                            used += spent
                            if used > allowance:
                                took = end - ends + window
                                raise LimitExceeded(
                                    "loop share",
                                    f"evaluations used {used * 1000:.0f} ms of the last {took:.1f} s "
                                    f"({used / took:.0%} of the event loop), over the limit of "
                                    f"{share * 1000:g} ms per second averaged over {window:g} s; the "
                                    "rule is suspended until it is saved again",
                                )
                        else:
                            used, ends = spent, start + window

                return run

        c = rr.compiled
        if rr.cond is not None and c.cond is not None and c.cond.cost:
            rr.cond = timed(rr.cond)
        if rr.clear is not None and c.clear is not None and c.clear.cost:
            rr.clear = timed(rr.clear)
        for where, expr in c.exprs.items():
            if expr.cost:
                rr.values[where] = timed(rr.values[where])

    def watch_points(self, points: Iterable[str], now: float, rules: Iterable[str] | None = None) -> None:
        """Start the dead-man deadlines of `points` not watched yet (at start-up, and for a rule
        added): each from the point's last good reading (`latest`, restored at start-up), so a
        restart does not restart the clock of a silent point; from `now` for a point never seen
        (or whose last reading is stamped after `now`). With `rules`, only those rules' watches:
        a rule saved costs its own `no_data` patterns against the points, nothing for a rule
        without any, instead of every point's route rebuilt against every rule."""
        if rules is None:
            for point in points:
                self._watch(point, self._routing(point)[5], now)
            return
        watching = [
            rr
            for rr in (self.rules.get(rid) for rid in rules)
            if rr is not None and rr.no_data and rr.rule.enabled and rr.id not in self.suspended
        ]
        if not watching:
            return
        for point in points:
            watches = [(rr, secs) for rr in watching for rx, secs in rr.no_data if rx.match(point)]
            if watches:
                self._watch(point, watches, now)

    def _watch(self, point: str, watches: list[tuple[RuleRuntime, float]], now: float) -> None:
        if not watches:
            return
        hit = self.latest.get(point)
        since = now if hit is None else min(hit[0], now)
        for rr, secs in watches:
            if (rr.id, point) not in self._nodata_seen:
                self._nodata_seen[(rr.id, point)] = since
                self._push(since + secs, rr.id, point, "no_data")

    def restore(self, rule_id: str, key: str, st: KeyState) -> None:
        """Put back a persisted state and re-arm its timer (a pending `for:` keeps its start)."""
        rr = self.rules.get(rule_id)
        if rr is None:
            return
        if st.last_fired is not None:
            rr.last_fired = max(rr.last_fired or 0.0, st.last_fired)
        if st.phase not in ("pending", "active"):
            return
        rr.states[key] = st
        if st.phase == "pending" and st.since is not None:
            self._push(st.since + rr.for_s, rule_id, key, "for")
        elif st.phase == "active" and rr.rule.notify == "repeat" and st.last_notified is not None:
            self._push(st.last_notified + rr.every, rule_id, key, "repeat")

    def fill_windows(
        self, history: dict[tuple[str, float], Window], keep: Iterable[tuple[str, float]] = ()
    ) -> int:
        """Put windows read back from the journal in place (see `rules.backfill`); evaluates
        nothing. A window in `keep` already holds its history and is left alone; one created since
        the read started keeps what was fed to it live on top of the history. Returns how many
        windows were filled."""
        keep = set(keep)
        n = 0
        for key, hist in history.items():
            if key in keep:
                continue
            live = self.windows.get(key)
            if live is None:
                self.windows[key] = hist
                self._route.pop(key[0], None)  # the point's route lists its windows
            else:
                live.adopt(hist)
            n += 1
        return n

    def _patterns(self) -> PatternIndex:
        """The rules by the distinct patterns of their triggers and dead-man watches, each with
        its position among the rules (the order they are evaluated in) and, for trigger patterns,
        the spans of its windows over the triggering point. Built again after a rule is added,
        replaced or removed: O(rules), once, instead of every rule's patterns per point routed."""
        index = self._pattern_index
        if index is None:
            triggers: dict[str, list[tuple[int, RuleRuntime, tuple[float, ...], FastEntry]]] = {}
            watches: dict[str, list[tuple[int, int, RuleRuntime, float]]] = {}
            for n, rr in enumerate(self.rules.values()):
                c = rr.compiled
                own = tuple(
                    secs
                    for expr in (c.cond, c.clear, *c.exprs.values())
                    if expr
                    for wp, secs in expr.windows
                    if wp is None  # avg(point, ...) of the triggering point
                )
                # only used when the rule has a condition (a rule without one is routed slow)
                entry: FastEntry = (rr.cond or _no_condition, rr.states, rr)
                for pattern in dict.fromkeys(rx.pattern for rx in rr.points):
                    triggers.setdefault(pattern, []).append((n, rr, own, entry))
                for j, (rx, secs) in enumerate(rr.no_data):
                    watches.setdefault(rx.pattern, []).append((n, j, rr, secs))
            index = self._pattern_index = (
                [(re.compile(p), rules) for p, rules in triggers.items()],
                [(re.compile(p), rules) for p, rules in watches.items()],
            )
        return index

    def _routing(self, point: str) -> Route:
        """(fast rules, slow rules, has side effects, (device, name), windows, dead-man watches)."""
        route = self._route.get(point)
        if route is None:
            fast: list[FastEntry] = []
            slow: list[RuleRuntime] = []
            triggers, watches = self._patterns()
            hits = [rules for rx, rules in triggers if rx.match(point)]
            # in the rules' order; a rule two of whose patterns match, once
            matched = (
                hits[0] if len(hits) == 1 else sorted({e[0]: e for rules in hits for e in rules}.values())
            )
            suspended = self.suspended
            for _, rr, own, entry in matched:
                if not rr.rule.enabled or rr.id in suspended:
                    continue
                if rr.cond is not None and not rr.always and not rr.error:
                    fast.append(entry)
                else:
                    slow.append(rr)
                for secs in own:
                    self.windows.setdefault((point, secs), Window(secs))
            watching = [e for rx, entries in watches if rx.match(point) for e in entries]
            nodata = [
                (rr, secs)
                for _, _, rr, secs in sorted(watching, key=lambda e: e[:2])
                if rr.rule.enabled and rr.id not in suspended
            ]
            wins = [w for (p, _), w in self.windows.items() if p == point]
            device, _, name = point.partition(".")
            route = (
                tuple(fast),
                tuple(slow),
                bool(wins or nodata),
                (device, name),
                wins,
                nodata,
                len(fast) + len(slow),
            )
            self._route[point] = route
        return route

    # ------------------------------------------------------------ timers
    def _push(self, deadline: float, rule: str, key: str, kind: str) -> None:
        heapq.heappush(self._timers, (deadline, next(self._counter), rule, key, kind))

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def advance(self, now: float, out: list[Firing] | None = None) -> list[Firing]:
        """Run every timer due at or before `now`, in deadline order."""
        out = [] if out is None else out
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, rid, key, kind = heapq.heappop(timers)
            rr = self.rules.get(rid)
            if rr is None or not rr.rule.enabled:
                continue
            self.now = max(self.now, deadline)
            if rid in self.suspended:  # evaluates nothing; keeps its schedule for when it is saved
                if kind == "schedule" and key == rr.schedule_token:
                    self._next_schedule(rr, deadline)
                continue
            st = rr.states.get(key)
            if kind == "for":
                if st and st.phase == "pending" and st.since is not None and st.since + rr.for_s == deadline:
                    args = _with_ts(st.args or _empty_args(key), deadline)
                    self.evaluations += 1
                    self._evaluate(rr, key, args, deadline, out)
            elif kind == "repeat":
                if (
                    st
                    and st.phase == "active"
                    and st.last_notified is not None
                    and st.last_notified + rr.every == deadline
                ):
                    if self.one_late_repeat and deadline + rr.every <= now:
                        # the ones missed since are not run, and the one that is runs now: stamped
                        # with its old deadline it would be hours in the past (journaled, sent to
                        # webhooks, counted in a day already closed). The next is `every` from now
                        deadline = now
                        self.now = max(self.now, now)
                    out.append(
                        Firing(rr, key, "repeat", deadline, _with_ts(st.args or _empty_args(key), deadline))
                    )
                    st.last_notified = deadline
                    self.dirty.add((rid, key))
                    self._push(deadline + rr.every, rid, key, "repeat")
            elif kind == "no_data":
                self._nodata_due(rr, key, deadline, out)
            elif kind == "schedule":
                if key != rr.schedule_token:  # queued for a version of the rule since reset
                    continue
                args = (None, None, "", "", "", deadline, "good", "schedule", "", "", None)
                self.evaluations += 1
                self._evaluate(rr, "", args, deadline, out)
                self._next_schedule(rr, deadline)
        return out

    @property
    def has_schedules(self) -> bool:
        """Whether any rule has a schedule trigger (kept as a set: asked once per batch)."""
        return bool(self._scheduled)

    def skip_schedules(self, after: float, until: float) -> list[str]:
        """Drop the schedule timers due in (`after`, `until`] without running them, and queue each
        of those rules' next match after `until`: the span a forward jump of the wall clock went
        over, which no real time passed through. Returns the rules whose schedule was skipped."""
        kept, skipped = [], []
        for timer in self._timers:
            deadline, _, rid, key, kind = timer
            if kind == "schedule" and after < deadline <= until:
                rr = self.rules.get(rid)
                if rr is not None and key == rr.schedule_token:  # else queued for an older version
                    skipped.append(rr)
            else:
                kept.append(timer)
        if len(kept) == len(self._timers):
            return []
        heapq.heapify(kept)
        self._timers = kept
        for rr in skipped:
            self._next_schedule(rr, until)
        return [rr.id for rr in skipped]

    def shift_timers(self, step: float) -> int:
        """Move by `step` seconds what measures a duration on the wall clock: each pending
        `for:`'s start, each active repeat's last notification, each dead-man watch's last good
        reading, and their timers. The wall clock was stepped by that much (NTP, a hand set) and no
        real time passed: a `for: 15s` still needs 15 s of holding, and a step of an hour neither
        fires it at once nor, backwards, holds it an hour. Schedules are times of the day and
        stay (a forward step's are `skip_schedules`). Returns how many keys moved."""
        if not step:
            return 0
        moved = 0
        # `for:` and repeat timers are pushed again from their moved states, so that a timer's
        # deadline is exactly what `advance` compares it with
        timers = [
            (deadline + step, n, rid, key, kind) if kind == "no_data" else (deadline, n, rid, key, kind)
            for deadline, n, rid, key, kind in self._timers
            if kind in ("schedule", "no_data")
        ]
        heapq.heapify(timers)
        self._timers = timers
        for rr in self.rules.values():
            for key, st in rr.states.items():
                if st.phase == "pending" and st.since is not None:
                    st.since += step
                elif st.phase == "active" and rr.rule.notify == "repeat" and st.last_notified is not None:
                    st.last_notified += step
                else:
                    continue
                moved += 1
                self.dirty.add((rr.id, key))
            if rr.rule.enabled and rr.id not in self.suspended:
                self._rearm_states(rr)  # a suspended rule's are armed when it is saved again
        seen = self._nodata_seen
        for k in seen:
            seen[k] += step
        self.now += step
        return moved + len(seen)

    def _next_schedule(self, rr: RuleRuntime, deadline: float) -> None:
        for cron in rr.schedules:
            nxt = cron.next_after(deadline, self.tz)
            if nxt > deadline:
                self._push(nxt, rr.id, rr.schedule_token, "schedule")
                break

    def _nodata_due(self, rr: RuleRuntime, point: str, deadline: float, out: list[Firing]) -> None:
        seen = self._nodata_seen.get((rr.id, point))
        secs = next((s for rx, s in rr.no_data if rx.match(point)), None)
        if seen is None or secs is None:
            return
        if seen + secs > deadline:  # a reading came in since: wait from that reading
            self._push(seen + secs, rr.id, point, "no_data")
            return
        del self._nodata_seen[(rr.id, point)]  # the next reading re-arms the watch
        st = rr.states.get(point)
        if st is not None and st.phase == "active":
            return
        hit = self.latest.get(point)
        device, _, name = point.partition(".")
        args = (hit[2] if hit else None, None, point, device, name, deadline, "good", "no_data", "", "", None)
        if rr.cond is not None:
            try:
                if not rr.cond(args):
                    return
            except Exception as exc:
                self._error(rr, point, deadline, args, exc, out)
                return
        self._fire(rr, point, rr.state(point), deadline, args, out)

    # ------------------------------------------------------------ records (hot path)
    def process(self, records: Iterable[Any]) -> list[Firing]:
        out: list[Firing] = []
        timers = self._timers
        routes = self._route
        latest = self.latest
        evaluate = self._evaluate
        now = self.now
        n = 0
        for rec in records:
            ts = rec[0] if type(rec) is Reading else rec.ts
            if ts > now:
                now = self.now = ts
            if timers and timers[0][0] <= ts:
                self.advance(ts, out)
            if type(rec) is not Reading:
                if isinstance(rec, Event):
                    self._event(rec, out)
                continue
            _, point, v, quality = rec
            if quality:
                continue  # bad/stale samples feed no window and no rule (see docs)
            old = latest.get(point)
            prev = old[2] if old is not None else v
            latest[point] = rec
            route = routes.get(point) or self._routing(point)
            if route[2]:
                self._side_effects(rec, route, out)
            fast = route[0]
            if not fast and not route[1]:
                continue
            device, name = route[3]
            args = (v, prev, point, device, name, ts, "good", None, None, None, None)
            n += route[6]
            # a key in state ok whose condition is false costs one call and nothing more
            for cond, states, rr in fast:
                if point not in states:
                    try:
                        if not cond(args):
                            continue
                    except Exception as exc:
                        # reported here: evaluating it again could double the cost of one over budget
                        self._error(rr, point, ts, args, exc, out)
                        continue
                evaluate(rr, point, args, ts, out)
            for rr in route[1]:
                evaluate(rr, point, args, ts, out)
        self.evaluations += n
        return out

    def _side_effects(self, r: Reading, route: Route, out: list[Firing]) -> None:
        """Windows and dead-man watches of a point (only points that have any)."""
        point, v, ts = r.point, r.value, r.ts
        if route[4] and isinstance(v, int | float):
            fv = float(v)
            for w in route[4]:
                w.add(ts, fv)
        for rr, secs in route[5]:
            k = (rr.id, point)
            if k not in self._nodata_seen:  # one timer per (rule, point), re-armed when it pops
                self._push(ts + secs, rr.id, point, "no_data")
            self._nodata_seen[k] = ts
            st = rr.states.get(point)
            if st is not None and st.phase == "active":
                self._clear(rr, point, st, ts, st.args or _empty_args(point), out)

    def _event(self, e: Event, out: list[Firing]) -> None:
        rules = self._event_route.get(e.kind)
        if rules is None:
            rules = self._event_route[e.kind] = tuple(
                rr
                for rr in self.rules.values()
                if rr.rule.enabled and rr.id not in self.suspended and any(p.match(e.kind) for p in rr.events)
            )
        if not rules:
            return
        payload = e.payload if isinstance(e.payload, dict) else {}
        value = payload.get("value")
        args = (
            value,
            None,
            str(payload.get("point", "")),
            e.source,
            e.kind,
            e.ts,
            "good",
            e.kind,
            e.source,
            str(e.severity),
            payload,
        )
        self.evaluations += len(rules)
        for rr in rules:
            self._evaluate(rr, e.source, args, e.ts, out)

    def _evaluate(self, rr: RuleRuntime, key: str, args: Args, ts: float, out: list[Firing]) -> None:
        st = rr.states.get(key)
        phase = st.phase if st is not None else "ok"
        try:
            if phase == "active" and rr.clear is not None:
                if rr.clear(args):
                    self._clear(rr, key, st, ts, args, out)  # type: ignore[arg-type]
                else:
                    st.args = args  # type: ignore[union-attr]
                if rr.error:
                    self._recovered(rr)
                return
            hit = rr.cond(args) if rr.cond is not None else True
        except Exception as exc:
            self._error(rr, key, ts, args, exc, out)
            return
        if rr.error:
            self._recovered(rr)
        if hit:
            if rr.always:  # derived values: act on every evaluation that holds, keep no state per key
                rr.last_fired = ts
                # but when it last fired, rule-wide, survives a restart: the rules list shows it
                rr.state(ALWAYS_KEY).last_fired = ts
                self.dirty.add((rr.id, ALWAYS_KEY))
                out.append(Firing(rr, key, "fired", ts, args))
            elif phase == "ok":
                st = st or rr.state(key)
                if rr.for_s > 0:
                    st.phase, st.since, st.args = "pending", ts, args
                    self._push(ts + rr.for_s, rr.id, key, "for")
                    self.dirty.add((rr.id, key))
                else:
                    self._fire(rr, key, st, ts, args, out)
            elif phase == "pending":
                st.args = args  # type: ignore[union-attr]
                if ts - st.since >= rr.for_s:  # type: ignore[union-attr,operator]
                    self._fire(rr, key, st, ts, args, out)  # type: ignore[arg-type]
        elif phase == "pending":
            del rr.states[key]
            self.dirty.add((rr.id, key))
        elif phase == "active" and rr.clear is None:
            self._clear(rr, key, st, ts, args, out)  # type: ignore[arg-type]

    def _fire(
        self, rr: RuleRuntime, key: str, st: KeyState, ts: float, args: Args, out: list[Firing]
    ) -> None:
        st.phase, st.since, st.last_fired, st.last_notified, st.args = "active", ts, ts, ts, args
        rr.last_fired = ts
        out.append(Firing(rr, key, "fired", ts, args))
        if rr.rule.notify == "repeat":
            self._push(ts + rr.every, rr.id, key, "repeat")
        self.dirty.add((rr.id, key))

    def _clear(
        self, rr: RuleRuntime, key: str, st: KeyState, ts: float, args: Args, out: list[Firing]
    ) -> None:
        st.phase, st.since, st.args = "ok", None, args
        rr.states.pop(key, None)
        out.append(Firing(rr, key, "cleared", ts, args))
        self.dirty.add((rr.id, key))

    def _recovered(self, rr: RuleRuntime) -> None:
        rr.error = ""
        self._unroute(rr, rules_changed=False)

    def _error(
        self, rr: RuleRuntime, key: str, ts: float, args: Args, exc: BaseException, out: list[Firing]
    ) -> None:
        msg = f"{type(exc).__name__}: {exc}"[:500]
        if isinstance(exc, LimitExceeded) and exc.limit in SUSPENDING:
            if exc.limit == "loop share" and rr.id not in self.suspended:
                self.loop_share_suspensions += 1
            self.suspended[rr.id] = msg
            self._unroute(rr, rules_changed=False)
            self._event_route.clear()
        if rr.error != msg:  # report a new error once, not on every reading
            if not rr.error:
                self._unroute(rr, rules_changed=False)  # the rule leaves the hot path until it recovers
            rr.error, rr.error_ts = msg, ts
            out.append(Firing(rr, key, "error", ts, args, error=msg))


class UnknownPoint(LookupError):
    """p() of a point the site does not have (a misspelt id), named in the rule's error."""

    def __init__(self, point: str) -> None:
        super().__init__(
            f"p('{point}'): no point {point} on this site (is the id misspelt? a device that "
            "registers its points at its first packet has none before it reports)"
        )


def _named_windows(compiled: CompiledRule) -> set[tuple[str, float]]:
    """The windows a rule reads over points it names (`avg('m1.p', '10m')`)."""
    exprs = (compiled.cond, compiled.clear, *compiled.exprs.values())
    return {(p, secs) for expr in exprs if expr for p, secs in expr.windows if p is not None}


def _no_condition(args: Args) -> bool:
    return True


def _with_ts(args: Args, ts: float) -> Args:
    return (*args[:TS], ts, *args[TS + 1 :])


def _empty_args(key: str) -> Args:
    device, _, name = key.partition(".")
    return (None, None, key, device, name, 0.0, "good", None, None, None, None)
