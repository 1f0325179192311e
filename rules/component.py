"""The running rules engine inside a Runtime: load, subscribe, time, act, persist, manage.

`create(ctx)` returns the component (ctx: the runtime's narrow `ComponentContext`). On start it imports from the site's packs each rule not
imported before, loads every stored rule into the `Engine`, restores persisted rule state (so a pending
`for:` keeps its start time and an active alert does not fire again), refills the rules' windows
from the journal (`rules.backfill`, so `avg(P, 10m)` means the same right after a restart), and
only then subscribes to the hub. A rule created or changed at run time gets its new windows
refilled the same way, in a task.
The API changes rules only through the methods here, so store and engine never diverge. `edge rules
import` stores rules from another process: the component notices (SQLite's `data_version` moves
when another connection commits) and loads every rule whose stored version is not the one it runs,
as a restart would, within RELOAD_INTERVAL and before the API lists, shows or changes a rule; so
the rule the UI shows is the one in force.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import math
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge import audit
from edge.api.problem import Problem
from edge.clock import ClockWatch
from edge.driver import Snapshots
from edge.model import Event, Privacy, Record, Severity
from edge.yamlpos import YamlError, read_text
from rules import metrics
from rules.actions import ActionRunner
from rules.backfill import WindowWants, read_history, wants_of
from rules.config import RulesConfig, resolve_pack
from rules.cron import site_tz
from rules.engine import LOOP_SHARE, Engine, Firing, KeyState
from rules.expr import ExprError
from rules.model import (
    CompiledRule,
    RuleErrors,
    RulePackError,
    compile_pack,
    configured_device,
    dump_pack,
    parse_rule,
    set_target_problems,
    webhook_problems,
)
from rules.point_warnings import rule_warnings, set_targets
from rules.store import RESTORED, RuleStore, StateWriter, StoredRule
from rules.windows import expected_bytes

if TYPE_CHECKING:
    from prometheus_client import Metric

    from edge.plugins import ComponentContext

log = logging.getLogger("rules")
RATE_LIMITS = "rate_limits"  # rules_meta key: each rule's remaining action budget
PERSIST_DELAY = 0.05  # seconds a rule state change may wait to be written (kill -9 window)
DRY_RUN_SECONDS = 30.0  # wall-clock budget of one dry run (its process is killed past it)
DRY_RUN_MEMORY = 512 * 2**20  # resident memory of a dry run's process (its address space: twice that)
MAX_DRY_RUNS = 2  # dry runs at once; more are refused with 429 and Retry-After
RELOAD_INTERVAL = 1.0  # seconds between looks for rules another process stored (`edge rules import`)


class DryRunBusy(Problem):
    """429 with the Retry-After header the plain problem response cannot carry."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            429,
            "Too many dry runs",
            f"{MAX_DRY_RUNS} dry runs are running; try again in {retry_after} s",
            retry_after=retry_after,
        )
        self.retry_after = retry_after

    def response(self) -> web.Response:
        resp = super().response()
        resp.headers["Retry-After"] = str(self.retry_after)
        return resp


class RulesComponent:
    name = "rules"

    def __init__(self, ctx: ComponentContext, config: RulesConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.engine = Engine(site_tz(ctx.site.site.timezone))
        self.engine.loop_share = LOOP_SHARE  # live: no rule may take more than its share of the loop
        self.engine.one_late_repeat = True  # live: missed repeats go as one, stamped when it is sent
        self.engine.known_point = self._known_point
        self.actions = ActionRunner(ctx, config)
        self.actions.snapshot_hook = self._snapshot
        self.store: RuleStore | None = None
        self.writer: StateWriter | None = None
        self.broken: dict[str, str] = {}  # stored rules that no longer compile: id -> error
        #: id -> the stored version the engine runs (or found broken): a stored version other than
        #: this one was stored by another process, and is loaded (`reload_changed`)
        self._loaded: dict[str, int] = {}
        self._data_version: int | None = None
        self._reload_timer: asyncio.TimerHandle | None = None
        self.reloaded = 0  # rule versions loaded from what another process stored
        #: held while a pack is stored: the API's saves and deletions wait for it here, off the
        #: event loop, instead of for the state database's lock on it
        self.changing = asyncio.Lock()
        #: one per pack being stored: rule id -> the version a save or deletion on the loop wrote
        #: meanwhile; the pack's older version of such a rule is not run (`store_pack`)
        self._storing: list[dict[str, int]] = []
        self._unsubscribe: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self.firings = 0
        self.schedules_skipped = 0  # schedule matches a forward jump of the clock went over
        self.timers_moved = 0  # rule keys whose timers moved with a step of the wall clock
        #: steps of the wall clock between two looks of `_guard_clock`
        self._clock_watch = ClockWatch(ctx.site.clock.max_step)
        self._started = False
        self._backfills: set[asyncio.Task[None]] = set()
        self.backfill: dict[str, Any] = {"runs": 0, "windows": 0, "rows": 0, "samples": 0, "truncated": 0}
        self.dry_run_seconds = DRY_RUN_SECONDS
        self.dry_run_memory = DRY_RUN_MEMORY
        self.dry_runs: dict[object, float] = {}  # each running dry run -> its monotonic deadline
        self.dry_run_procs: set[asyncio.subprocess.Process] = set()
        self.window_refusals = 0  # rules refused for windows over rules.window_memory_mb
        self._intervals = _point_intervals(ctx)
        #: the points the rules set by name (`set_targets`): a virtual point not set yet is known
        #: to p() by one set lookup, rebuilt where rules are run or dropped (`_targets_changed`)
        self._set_targets: set[str] = set()
        #: the devices whose points the site file does not give (a BLE device's default map: a
        #: point registered per object at its first packet): p() of their point not reported yet
        #: is None; a device's point the site file would have given is a misspelt id
        declared = {info.device for info in ctx.site.point_infos()}
        self._learning = frozenset(dev.id for dev in ctx.site.devices if dev.id not in declared)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.store = RuleStore(self.ctx.state)
        # reading and compiling packs is CPU work proportional to their size: off the event loop
        await self._import_packs(await asyncio.to_thread(self._read_packs))
        self.actions.restore_limits(self.store.meta(RATE_LIMITS))
        # before the rules are read: a commit of another process after this is looked at
        self._data_version = self.store.changed_elsewhere()
        now = self.ctx.clock()
        self.engine.now = now
        self._clock_watch.observe(self.ctx.clock_sample())  # a step from here on moves the timers
        for point, reading in self.ctx.restored_good.items():
            self.engine.latest.setdefault(point, reading)
        for stored in self.store.list_rules():
            self._load(stored)
        self._targets_changed()
        for rule_id, states in self.store.load_states().items():
            for key, st in states.items():
                self.engine.restore(rule_id, key, st)
        # a point that reported before but is not registered yet (a BLE sensor's default-map
        # object registers on its first packet) is watched too, if its device is still configured
        devices = {dev.id for dev in self.ctx.site.devices}
        known = [
            p for p in self.engine.latest if p not in self.ctx.hub.points and p.partition(".")[0] in devices
        ]
        if self.store.meta(RESTORED):
            # the first start after a restore: the journal's newest readings are the backup's (those
            # since are not in it), so a silence counted from them would be the restore's, not the
            # device's. The watches count from now; the values stay for p() and prev
            latest = dict(self.engine.latest)
            self.engine.latest.clear()
            self.engine.watch_points([*self.ctx.hub.points, *known], now)
            self.engine.latest.update(latest)
            self.store.set_meta(RESTORED, "")
        else:
            self.engine.watch_points([*self.ctx.hub.points, *known], now)
        self.writer = StateWriter(self.store)
        # windows hold the journal's recent readings before the first live reading arrives
        await self._backfill(wants_of(self.engine.rules.values()), keep=set())
        self._started = True
        self._unsubscribe = self.ctx.hub.subscribe(self._on_records)
        # timers whose deadline passed while the gateway was down are due now
        self._after(self.engine.advance(now))
        self._reload_timer = asyncio.get_running_loop().call_later(RELOAD_INTERVAL, self._reload_tick)

    async def reload(self) -> None:
        """The site file was reloaded: the keys of `rules:` a reload applies (the plugin's
        `live_keys`: where webhooks may post, their timeout and retries, the action budget, the
        window limits) are read from the section now in force, by the actions at their next run and
        by the next save; `enabled` and `packs` wait for a restart (named in `restart_pending`)."""
        config = self.ctx.site.sections.get("rules")
        if isinstance(config, RulesConfig) and config is not self.config:
            self.config = config
            self.actions.config = config

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.dry_run_procs:
            from rules.dry_run_worker import end

            await asyncio.gather(*(end(p) for p in list(self.dry_run_procs)))
        for task in list(self._backfills):
            task.cancel()
        await asyncio.gather(*self._backfills, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
        if self._reload_timer is not None:
            self._reload_timer.cancel()
            self._reload_timer = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_states()
        await self.actions.close()
        if self.writer is not None:
            self.writer.close()

    async def _snapshot(self, camera: str, firing: Firing) -> Any:
        """A rule's snapshot action: the device named takes it through the `Snapshots` capability
        of its driver (a camera), whatever that driver is."""
        try:
            taker = self.ctx.driver_with(camera, Snapshots)
        except LookupError as exc:
            raise LookupError(f"snapshot: {exc} (name a device that takes snapshots: a camera)") from None
        if taker is None:
            raise RuntimeError(f"snapshot: camera {camera!r} is restarting")
        subject = self._subject_of(firing)
        if subject is None:
            return await taker.snapshot(f"rule:{firing.rule.id}", rule=firing.rule.id)
        return await taker.snapshot(f"rule:{firing.rule.id}", rule=firing.rule.id, subject=subject)

    def _subject_of(self, firing: Firing) -> str | None:
        """Whom the record that fired the rule is about: the resident or plate its event payload
        names, or a personal/sensitive string point's value (a plate); None for anything else. A
        sensitive camera seals the picture under that subject's key, so forgetting them erases it."""
        from edge.privacy.atrest import SITE_SUBJECT, subject_of

        value, point, payload = firing.args[0], firing.args[2], firing.args[10]
        if isinstance(payload, dict):
            # an event about a private string point (another rule's alert on a plate) names its value
            subject = subject_of(payload, self.ctx.hub.private_ranks)
            return None if subject == SITE_SUBJECT else subject
        info = self.ctx.hub.points.get(point) if point else None
        if info is not None and info.privacy != Privacy.PUBLIC and isinstance(value, str) and value:
            return value
        return None

    def status(self) -> dict[str, Any]:
        rules = self.engine.rules.values()
        return {
            "rules": len(self.engine.rules) + len(self.broken),
            "enabled": sum(1 for r in rules if r.rule.enabled),
            "active": sum(1 for r in rules if r.summary == "active"),
            "pending": sum(1 for r in rules if r.summary == "pending"),
            "errors": sum(1 for r in rules if r.summary == "error") + len(self.broken),
            "evaluations": self.engine.evaluations,
            "firings": self.firings,
            "schedules_skipped": self.schedules_skipped,
            "timers_moved": self.timers_moved,
            "actions_executed": self.actions.executed,
            "actions_failed": self.actions.failed,
            "actions_cancelled": self.actions.cancelled,  # not done: the gateway stopped (grace over)
            "rate_limited": sum(self.actions.rate_limited.values()),
            "state_write_errors": self.writer.errors if self.writer else 0,
            "suspended": len(self.engine.suspended),  # over their time budget, not evaluated
            # rules suspended since start for using more than their share of the event loop
            "loop_share_suspensions": self.engine.loop_share_suspensions,
            "dry_runs": len(self.dry_runs),
            # flat, so /metrics shows them (edge_rules_status{field=...})
            "windows_refilled": self.backfill["windows"],
            "window_backfill_truncated": self.backfill["truncated"],
            "window_backfill": dict(self.backfill),
            **self._window_status(),
        }

    def _window_status(self) -> dict[str, Any]:
        windows = self.engine.windows.values()
        return {
            "windows": len(self.engine.windows),
            "windows_downsampled": sum(1 for w in windows if w.coarse),
            "window_memory_bytes": sum(w.memory() for w in windows),
            "window_memory_budget_bytes": self.config.window_memory_mb * 2**20,
            "window_budget_refusals": self.window_refusals,
        }

    def collect_metrics(self) -> Iterator[Metric]:
        return metrics.families(self.status)

    def rule_documents(self) -> list[dict[str, Any]]:
        """The stored rules as their canonical documents: what the rules hash covers
        (`edge.buildinfo.RulesInForce`), a rule that no longer compiles included."""
        return [s.doc for s in self.store.list_rules()] if self.store is not None else []

    # ------------------------------------------------------------ window history
    async def _backfill(self, wants: WindowWants, keep: set[tuple[str, float]]) -> None:
        """Refill `wants` from the journal; windows in `keep` already hold their history."""
        limit = self.config.window_backfill_rows
        if not wants or limit <= 0:
            return
        journal = self.ctx.journal
        upto = await journal.flush()  # everything the engine was given so far is now readable
        history = await asyncio.to_thread(read_history, journal, wants, self.ctx.clock(), upto, limit)
        filled = self.engine.fill_windows(history.windows, keep)
        b = self.backfill
        b["runs"] += 1
        b["windows"] += filled
        b["rows"] += history.rows
        b["samples"] += history.samples
        b["truncated"] += int(history.truncated)
        b["last"] = history.summary()
        if history.truncated:
            log.warning(
                "rule windows refilled from the newest %d journal rows only (rules.window_backfill_rows)",
                limit,
            )

    def _backfill_later(self, rule_ids: list[str], keep: set[tuple[str, float]]) -> None:
        """Refill, in one task, the windows of `rule_ids` not in `keep` (a pack: one journal read)."""
        if not self._started:
            return  # at start-up every rule's windows are refilled at once
        wants = WindowWants()
        for rule_id in rule_ids:
            rr = self.engine.rules.get(rule_id)
            if rr is not None:
                wants.add_rule(rr)
        wants.points -= keep
        if not wants:
            return
        task = asyncio.get_running_loop().create_task(self._backfill(wants, keep))
        self._backfills.add(task)
        task.add_done_callback(self._backfill_done)

    def _backfill_done(self, task: asyncio.Task[None]) -> None:
        self._backfills.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("refilling rule windows failed: %s", task.exception())

    async def backfilled(self) -> None:
        """Wait until the windows of rules changed so far hold their history."""
        while self._backfills:
            await asyncio.gather(*list(self._backfills), return_exceptions=True)

    # ------------------------------------------------------------ dry run
    async def dry_run(self, compiled: CompiledRule, since: float, until: float) -> dict[str, Any]:
        """`compiled` over the journal's records in [since, until], acting on nothing; its windows
        start with the readings before `since` (same row cap as the refill at start).

        It runs in a child process (`rules.dry_run_worker`) on a read-only connection to the
        journal file, so no work of the dry run can hold this process's event loop, within a
        wall-clock budget (`dry_run_seconds`) and a memory budget (`dry_run_memory` resident), at
        most MAX_DRY_RUNS at once. Raises `Problem`: 422 over a budget or a limit, 429 with
        Retry-After when too many run, 503 when the child failed."""
        # here: a gateway nobody dry-runs a rule on never loads the child's supervisor
        from rules.dry_run_worker import ChildFailed, OverBudget, run_in_child

        now = time.monotonic()
        if len(self.dry_runs) >= MAX_DRY_RUNS:
            raise DryRunBusy(max(1, math.ceil(min(self.dry_runs.values()) - now)))
        token = object()
        self.dry_runs[token] = now + self.dry_run_seconds
        try:
            journal = self.ctx.journal
            await journal.flush()  # the child reads the file: every record handed over so far is in it
            request = {
                "journal": str(journal.path),
                "rule": compiled.rule.doc(),
                "timezone": self.ctx.site.site.timezone,
                "since": since,
                "until": until,
                "max_rows": self.config.window_backfill_rows,
                # the hub's classes (rule-set points included) judge each firing's privacy
                "point_classes": {p: str(i.privacy) for p, i in self.ctx.hub.points.items()},
            }
            return await run_in_child(request, self.dry_run_seconds, self.dry_run_memory, self.dry_run_procs)
        except OverBudget as exc:
            hint = {"time": "; dry-run fewer hours or a simpler rule", "memory": "; dry-run fewer hours"}
            raise Problem(
                422, "Dry run over its budget", f"{exc}{hint.get(exc.limit, '')}", limit=exc.limit
            ) from None
        except ChildFailed as exc:
            log.error("%s", exc)
            raise Problem(503, "Dry run failed", "the dry run's process ended unexpectedly") from None
        finally:
            del self.dry_runs[token]

    # ------------------------------------------------------------ live evaluation
    def _on_records(self, records: list[Record]) -> None:
        self._guard_clock()
        self._after(self.engine.process(records))

    def _guard_clock(self) -> None:
        """Rule timers follow real time, not steps of the wall clock (`edge.clock.ClockWatch`
        measures them against the monotonic clock), looked at before the engine sees a time
        later than a step (a record stamped after it, or a timer):

        - what measures a duration — a pending `for:`, a repeat's `every`, a dead-man's `no_data`
          period — moves with the step (`Engine.shift_timers`): a step of an hour forward
          neither fires a `for: 15s` at once nor, backwards, holds it an hour;
        - schedules never act on a forward step: the matches in the span it went over are skipped
          — each runs next at its first match after the new time — instead of all running at
          once, and an hourly rule not 24 times for a clock set a day ahead. A step back needs
          nothing for them: their timers wait for the time of day to come again."""
        now = self.ctx.clock_sample()
        step = self._clock_watch.observe(now)
        if step is None or step.mono_elapsed < 0:
            return
        moved = self.engine.shift_timers(step.step)
        if moved:
            self.timers_moved += moved
            log.warning("rule timers of %d keys moved with the clock: %s", moved, step.describe())
        if step.step <= 0 or not self.engine.has_schedules:
            return
        last_wall = now.wall - step.wall_elapsed
        skipped = self.engine.skip_schedules(last_wall + step.mono_elapsed, now.wall)
        if not skipped:
            return
        self.schedules_skipped += len(skipped)
        log.warning("schedules of %s not run: %s", ", ".join(sorted(set(skipped))), step.describe())
        payload = {
            "rules": sorted(set(skipped)),
            "skipped": len(skipped),
            "step_s": round(step.step, 3),
            "reason": step.describe(),
        }
        event = Event("schedules_skipped", "rules", Severity.WARNING, payload, now.wall)
        # not from inside the hub's fan-out that called us: the event is a record of its own
        asyncio.get_running_loop().call_soon(self.ctx.hub.publish_event, event)

    def _after(self, firings: list[Firing]) -> None:
        for f in firings:
            self.firings += 1
            try:
                self.actions.dispatch(f)
            except Exception:
                log.exception("dispatching rule %s failed", f.rule.id)
        if (self.engine.dirty or self.actions.limits_dirty) and self._flush_handle is None:
            # coalesce: a burst of state changes becomes one transaction in the writer thread,
            # which keeps that thread (and its GIL appetite) off the reading -> action path
            self._flush_handle = asyncio.get_running_loop().call_later(PERSIST_DELAY, self._flush_states)
        self._arm()

    def _flush_states(self) -> None:
        self._flush_handle = None
        eng = self.engine
        if self.writer is None:
            return
        meta = {RATE_LIMITS: self.actions.export_limits()} if self.actions.limits_dirty else {}
        if not eng.dirty:
            if meta:
                self.writer.submit([], meta)
            return
        rows: list[tuple[str, str, KeyState | None]] = []
        for rid, key in eng.dirty:
            rr = eng.rules.get(rid)
            st = rr.states.get(key) if rr else None
            snapshot = KeyState(st.phase, st.since, st.last_fired, st.last_notified, st.args) if st else None
            rows.append((rid, key, snapshot))
        eng.dirty.clear()
        self.writer.submit(rows, meta)

    def _arm(self) -> None:
        deadline = self.engine.next_deadline()
        if deadline is None or deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, deadline - self.ctx.clock())
        self._timer_at = deadline
        self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = self._timer_at = None
        self._guard_clock()
        self._after(self.engine.advance(self.ctx.clock()))

    # ------------------------------------------------------------ management (API, CLI)
    def _load(self, stored: StoredRule, checked: bool = False) -> None:
        """Run a stored rule, or hold it as broken: one that no longer compiles, or (`checked`,
        a version another process stored) one this site refuses to save (`problems`)."""
        self._loaded[stored.id] = stored.version
        try:
            compiled = parse_rule(stored.doc)
            if checked and (refused := self.problems(compiled)):
                raise RuleErrors(refused)
        except RuleErrors as exc:
            self.broken[stored.id] = str(exc)
            self.engine.remove(stored.id, drop_windows=checked)
            return
        self.broken.pop(stored.id, None)
        self.engine.add(compiled, self.ctx.clock())

    def _reload_tick(self) -> None:
        self._reload_timer = None
        try:
            self.reload_changed()
        except Exception:  # a locked or failing state DB: looked at again at the next tick
            log.exception("looking for rules stored by another process failed")
        if self._started:
            self._reload_timer = asyncio.get_running_loop().call_later(RELOAD_INTERVAL, self._reload_tick)

    def reload_changed(self) -> list[str]:
        """Load what another process (`edge rules import`) stored since the last look: each rule
        whose stored version is not the one the engine runs, as a restart would load it (its
        state starts fresh: the import dropped it), and drop a rule no longer stored. The ids
        loaded or dropped. Cheap when nothing changed: one `PRAGMA data_version`."""
        if self.store is None or not self._started:
            return []
        if self._storing:
            # the pack's transaction holds the state database: looked at once it runs (the
            # data version stays unseen), not before, or a pack's rule would be loaded twice
            return []
        seen = self.store.changed_elsewhere()
        if seen == self._data_version:
            return []
        self._data_version = seen
        stored = self.store.stored_versions()
        changed = sorted(
            {i for i in self._loaded if i not in stored}
            | {i for i, v in stored.items() if self._loaded.get(i) != v}
        )
        if not changed:
            return []
        now = self.ctx.clock()
        had = set(self.engine.windows)
        loaded: list[str] = []
        for rule_id in changed:
            current = self.store.get(rule_id)
            if current is None:
                self._loaded.pop(rule_id, None)
                self.engine.remove(rule_id, drop_windows=True)
                self.actions.forget_rule(rule_id)
                self.broken.pop(rule_id, None)
                log.info("rule %s deleted by another process: no longer run", rule_id)
                continue
            old = self.engine.rules.get(rule_id)
            if old is not None:  # its states go from the DB too, should the old version's be written since
                self.engine.dirty.update((rule_id, key) for key in old.states)
            self._load(current, checked=True)
            if rule_id in self.broken:
                log.warning(
                    "rule %s version %d, stored by %s, not run: %s",
                    rule_id,
                    current.version,
                    current.updated_by,
                    self.broken[rule_id],
                )
                continue
            loaded.append(rule_id)
            log.info("rule %s version %d, stored by %s, loaded", rule_id, current.version, current.updated_by)
        self.reloaded += len(changed)
        self._targets_changed()
        self._backfill_later(loaded, had)
        self.engine.watch_points(list(self.ctx.hub.points), now, rules=loaded)
        self._after([])  # the dropped states are written, the timers armed
        return changed

    def _read_packs(self) -> list[tuple[str, list[CompiledRule] | Exception]]:
        """Each site pack compiled, or why it cannot be (too large, unreadable, a rule that does
        not compile, a webhook the site does not allow): all or nothing, as an import from the UI."""
        out: list[tuple[str, list[CompiledRule] | Exception]] = []
        for pack in self.config.packs:
            try:
                text = read_text(resolve_pack(pack, self.ctx.site.source))
                out.append((pack, compile_pack(text, pack, webhook_allow=self.config.webhook_allow)))
            except (OSError, UnicodeDecodeError, YamlError, RulePackError) as exc:
                out.append((pack, exc))
        return out

    async def _import_packs(self, packs: list[tuple[str, list[CompiledRule] | Exception]]) -> None:
        """Import, from the site's packs, every rule not imported before: a pack added to the site
        file or a rule added to a pack arrives at the next start, while a rule once imported is
        never imported again — edited in the UI, or deleted there, it stays as the technician left
        it. An existing rule id is never overwritten. The state DB remembers `pack#rule` pairs;
        a database from before this (meta "1") counts every rule of the listed packs as imported.
        The new rules are stored in one transaction, in a thread; `start` loads them afterwards."""
        assert self.store is not None
        to_store: list[CompiledRule] = []  # compiled in a thread by _read_packs
        to_store_ids: set[str] = set()
        raw = self.store.meta("packs_imported")
        legacy = raw == "1"
        try:
            done: set[str] = set(json.loads(raw)) if raw and not legacy else set()
        except (ValueError, TypeError):
            done = set()
        kept: list[tuple[str, CompiledRule]] = []  # pack rules whose stored version stays in force
        for pack, compiled in packs:
            if not isinstance(compiled, Exception):
                new = [cr for cr in compiled if f"{pack}#{cr.rule.id}" not in done]
                if problems := self.pack_problems(new, pack):
                    compiled = RulePackError(problems)
            if isinstance(compiled, Exception):
                exc = compiled
                log.error("rule pack %s not imported: %s", pack, exc)
                self.ctx.hub.publish_event(
                    Event("rule_pack_error", "rules", Severity.WARNING, {"pack": pack, "error": str(exc)})
                )
                continue
            for cr in compiled:
                key = f"{pack}#{cr.rule.id}"
                if key in done:
                    kept.append((pack, cr))
                    continue
                done.add(key)
                if cr.rule.id in to_store_ids:
                    continue
                if legacy or self.store.get(cr.rule.id) is not None:
                    kept.append((pack, cr))
                    continue
                to_store.append(cr)
                to_store_ids.add(cr.rule.id)
                log.info("rule %s imported from pack %s", cr.rule.id, pack)
        if to_store:
            store = self.store
            stored = await asyncio.to_thread(
                lambda: store.put_many([cr.rule.doc() for cr in to_store], "system", "import")
            )
            await self._audit_stored(stored, "system", "import")
        self.store.set_meta("packs_imported", json.dumps(sorted(done)))
        await asyncio.to_thread(self._warn_pack_differs, kept)

    def _warn_pack_differs(self, kept: list[tuple[str, CompiledRule]]) -> None:
        """One warning per rule whose pack text differs from the stored rule that stays in force:
        a pack edited after its import (a fleet rollout, a hand edit) would otherwise change
        nothing without a word. Once per start: the packs are read only then."""
        assert self.store is not None
        warned: set[str] = set()
        for pack, cr in kept:
            rule_id = cr.rule.id
            stored = self.store.get(rule_id)
            if rule_id in warned or stored is None:
                continue  # deleted since its import: it stays deleted
            if json.loads(json.dumps(cr.rule.doc(), ensure_ascii=False)) == dict(stored.doc):
                continue
            warned.add(rule_id)
            log.warning(
                "rule %s in pack %s differs from its stored version %d (stored by %s), which stays "
                "in force: a pack read at start never overwrites a stored rule; to run the pack's "
                "version: edge rules import -c %s %s",
                rule_id,
                pack,
                stored.version,
                stored.updated_by,
                self.ctx.site.source,
                resolve_pack(pack, self.ctx.site.source),
            )

    def describe(self, stored: StoredRule) -> dict[str, Any]:
        rr = self.engine.rules.get(stored.id)
        state = "error" if stored.id in self.broken else rr.summary if rr else "disabled"
        return {
            "id": stored.id,
            "name": stored.doc.get("name", ""),
            "enabled": stored.enabled,
            "state": state,
            "last_fired": rr.last_fired if rr else None,
            "error": self.broken.get(stored.id) or (rr.error if rr else ""),
            "version": stored.version,
            "updated": stored.updated,
            "updated_by": stored.updated_by,
            "rule": stored.doc,
        }

    def put(self, doc: Any, actor: str, action: str = "update") -> StoredRule:
        """Validate, store (new version), and (re)load a rule. Raises RuleErrors, changing nothing.

        `doc` is a rule document, or a `CompiledRule` compiled beforehand: the API compiles in a
        thread (a large rule is a tenth of a second of CPU) and applies it here, on the event loop,
        the only place the engine changes."""
        assert self.store is not None
        self.reload_changed()  # a version stored by `edge rules import` is the one changed here
        compiled = doc if isinstance(doc, CompiledRule) else parse_rule(doc)
        # every way in (API, packs, restore, enable) stores an enabled rule only with allowed
        # destinations and virtual `set:` points; disabling one stored before must stay possible
        refused = self.problems(compiled)
        if refused:
            raise RuleErrors(refused)
        stored, previous, keep = self.store.put_many(
            [compiled.rule.doc()], actor, action, self._running([compiled])
        )[0]
        self._changed_meanwhile(stored.id, stored.version)
        self._apply([(compiled, stored, keep)])
        audit.record(
            self.ctx.state, actor, f"rule_{action}", stored.id, **_audit_detail(stored, previous, keep)
        )
        return stored

    def _running(self, compiled: list[CompiledRule]) -> set[str]:
        """The rules of `compiled` the engine runs now, compiled: a new version of one of them
        that leaves its logic alone keeps its state (`same_logic`, judged as it is stored)."""
        rules, broken = self.engine.rules, self.broken
        return {cr.rule.id for cr in compiled if cr.rule.id in rules and cr.rule.id not in broken}

    def _apply(self, stored: list[tuple[CompiledRule, StoredRule, bool]]) -> None:
        """Run the rules just stored, on the event loop (the only place the engine changes): each
        added, or swapped in keeping its state; then, once for them all, their dead-man watches
        started (their own patterns against the points), their windows refilled (one journal
        read) and the timer armed. Each rule costs its own patterns, not the routing of every
        point against every rule."""
        now = self.ctx.clock()
        had = set(self.engine.windows)
        for compiled, rule, keep in stored:
            self._loaded[rule.id] = rule.version
            if keep:  # a renamed rule or a reworded message keeps its pending timer and active alert
                self.engine.replace(compiled)
            else:
                self.engine.add(compiled, now)
            self.broken.pop(rule.id, None)
        self._targets_changed()
        ids = [rule.id for _, rule, _ in stored]
        self._backfill_later(ids, had)
        self.engine.watch_points(list(self.ctx.hub.points), now, rules=ids)
        self._arm()

    async def _audit_stored(
        self, stored: list[tuple[StoredRule, Any, bool]], actor: str, action: str
    ) -> None:
        """One audit entry per rule stored, written in a thread: each is a hashed, chained
        transaction, a thousand of them seconds of the event loop."""
        state = self.ctx.state

        def write() -> None:
            for rule, previous, keep in stored:
                audit.record(state, actor, f"rule_{action}", rule.id, **_audit_detail(rule, previous, keep))

        await asyncio.to_thread(write)

    def problems(
        self, compiled: CompiledRule, planned: set[tuple[str, float]] | None = None
    ) -> list[ExprError]:
        """What this site refuses in an enabled rule that compiles: a webhook to a destination
        `rules.webhook_allow` does not name, a `set:` of a point a driver registered, windows
        that would take the live windows over `rules.window_memory_mb` (`planned`: windows of the
        rules saved with it, a pack's)."""
        if not compiled.rule.enabled:
            return []
        return [
            *webhook_problems(compiled.rule, self.config.webhook_allow),
            *set_target_problems(compiled.rule, self.actions.driver_point),
            *self._window_problems(compiled, set() if planned is None else planned),
        ]

    def _window_bytes(self, key: tuple[str, float]) -> int:
        return expected_bytes(key[1], self._intervals.get(key[0]))

    def _window_problems(self, compiled: CompiledRule, planned: set[tuple[str, float]]) -> list[ExprError]:
        """The rule's windows not held yet, each at its size when full (its span over the point's
        interval when the site file gives one, else the most one window takes), on top of those
        held and `planned`: over the budget, the rule is refused, naming the window that does not
        fit. A window over a trigger pattern (`avg(value, ...)`) is one per point it matches."""
        budget = self.config.window_memory_mb * 2**20
        held = self.engine.windows
        used = sum(self._window_bytes(k) for k in held) + sum(self._window_bytes(k) for k in planned)
        rule = compiled.rule
        patterns = [_glob(t.point) for t in rule.when if t.point]
        fields = (("if", compiled.cond), ("clear_if", compiled.clear), *compiled.exprs.items())
        out: list[ExprError] = []
        for field_name, expr in fields:
            for wp, secs in expr.windows if expr else ():
                points = (
                    [wp]
                    if wp is not None
                    else [p for p in self.ctx.hub.points if any(rx.match(p) for rx in patterns)]
                )
                for point in points:
                    key = (point, secs)
                    if key in held or key in planned:
                        continue
                    need = self._window_bytes(key)
                    if used + need > budget:
                        self.window_refusals += 1
                        out.append(
                            ExprError(
                                f"the window of {secs:g} s over {point} would take about "
                                f"{need / 2**20:.1f} MiB when full; the rules' windows take "
                                f"{used / 2**20:.1f} MiB of their {budget // 2**20} MiB "
                                "(rules.window_memory_mb): shorten the window, read a point that "
                                "reports less often, or raise rules.window_memory_mb",
                                rule=rule.id,
                                field=field_name,
                            )
                        )
                        return out
                    used += need
                    planned.add(key)
        return out

    async def warnings(self, compiled: CompiledRule) -> list[ExprError]:
        """What `compiled` names that this site does not have now (`rules.point_warnings`): said
        when it is validated or saved, never refused. Matched in a thread (a rule's patterns
        against every point of a large site), over copies taken here on the loop."""
        points = dict(self.ctx.hub.points)
        return await asyncio.to_thread(rule_warnings, compiled, points, set(self._set_targets))

    def _targets_changed(self) -> None:
        self._set_targets = set_targets(rr.rule for rr in self.engine.rules.values())

    def _known_point(self, point: str) -> bool:
        """Whether `point` exists here: a device registered it, a rule sets it (a virtual point
        not set yet has no value, as a device's before its first reading), or it is of a device
        that registers its points as it reports them (the site file gives none: a BLE default
        map), which a rule may ask for (`p(...) is None`) before it does. Called for every p() of
        a point without a value: a few set lookups, whatever the number of rules."""
        return (
            point in self.ctx.hub.points
            or point in self._set_targets
            or configured_device(point, self._learning) is not None
        )

    def pack_problems(self, compiled: list[CompiledRule], file: str) -> list[str]:
        """`problems` of every rule of a pack, as `file: rule ID:FIELD: ...` lines (the windows of
        the pack's rules together)."""
        planned: set[tuple[str, float]] = set()
        return [f"{file}: {e}" for cr in compiled for e in self.problems(cr, planned)]

    def delete(self, rule_id: str, actor: str) -> bool:
        assert self.store is not None
        self.reload_changed()
        version = self.store.delete(rule_id, actor)
        if version is None:
            return False
        self._changed_meanwhile(rule_id, version)
        self._loaded.pop(rule_id, None)
        self.engine.remove(rule_id, drop_windows=True)
        self._targets_changed()
        self.actions.forget_rule(rule_id)
        self.broken.pop(rule_id, None)
        audit.record(self.ctx.state, actor, "rule_delete", rule_id)
        return True

    def _changed_meanwhile(self, rule_id: str, version: int) -> None:
        """Tell each pack being stored that `rule_id` is at `version` now (saved or deleted)."""
        for seen in self._storing:
            seen[rule_id] = max(version, seen.get(rule_id, 0))

    def set_enabled(self, rule_id: str, enabled: bool, actor: str) -> StoredRule | None:
        assert self.store is not None
        stored = self.store.get(rule_id)
        if stored is None:
            return None
        return self.put({**stored.doc, "enabled": enabled}, actor, "enable" if enabled else "disable")

    async def import_pack(self, text: str, actor: str, file: str = "<pack>") -> list[str]:
        """Compile the whole pack first (in a thread); store nothing unless every rule compiles."""
        allow = self.config.webhook_allow
        compiled = await asyncio.to_thread(compile_pack, text, file, webhook_allow=allow)
        return await self.store_pack(compiled, actor, file)

    async def store_pack(self, compiled: list[CompiledRule], actor: str, file: str = "<upload>") -> list[str]:
        """Store the rules of a pack compiled beforehand: all of them, or (RulePackError naming
        every problem) none. Stored in one transaction and audited in a thread; the event loop
        only runs the stored rules (`_apply`), so the gateway keeps serving, reading and acting
        while a pack of a thousand rules is imported.

        `changing` is held meanwhile (the API's saves wait for it), and what another process
        stored is looked at once the pack runs. A rule saved or deleted on the loop all the same,
        after the pack's transaction, is left as that change left it: the pack's older version
        is not run, nor a deleted rule run again."""
        assert self.store is not None
        async with self.changing:
            if problems := self.pack_problems(compiled, file):
                raise RulePackError(problems)
            self.reload_changed()  # a version stored by `edge rules import` is the one replaced here
            store, running = self.store, self._running(compiled)
            seen: dict[str, int] = {}
            self._storing.append(seen)
            try:
                stored = await asyncio.to_thread(
                    lambda: store.put_many([cr.rule.doc() for cr in compiled], actor, "import", running)
                )
            finally:
                self._storing.remove(seen)
            self._apply(
                [
                    (cr, rule, keep)
                    for cr, (rule, _, keep) in zip(compiled, stored, strict=True)
                    if seen.get(rule.id, 0) < rule.version
                ]
            )
        await self._audit_stored(stored, actor, "import")
        return [rule.id for rule, _, _ in stored]

    def export_pack(self) -> str:
        assert self.store is not None
        return dump_pack([s.doc for s in self.store.list_rules()])


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def _point_intervals(ctx: ComponentContext) -> dict[str, float]:
    """Each point's reading interval where the site file gives one (a point's or its device's
    `interval`, in seconds): how full a window over it gets."""
    out: dict[str, float] = {}
    for dev in ctx.site.devices:
        default = getattr(dev, "interval", None)
        for point in getattr(dev, "points", None) or ():
            name = getattr(point, "name", None)
            interval = getattr(point, "interval", None) or default
            if isinstance(name, str) and isinstance(interval, int | float) and interval > 0:
                out[f"{dev.id}.{name}"] = float(interval)
    return out


def _audit_detail(stored: StoredRule, previous: Any, keep: bool) -> dict[str, Any]:
    return {"version": stored.version, "rule_state": "kept" if keep else "reset" if previous else "new"}


def create(ctx: ComponentContext) -> RulesComponent | None:
    config = ctx.site.sections.get("rules") or RulesConfig.model_validate({})
    assert isinstance(config, RulesConfig)
    if not config.enabled:
        return None
    return RulesComponent(ctx, config)
