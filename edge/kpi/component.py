"""The KPI component: folds the journal behind a cursor into per-day figures, samples the delivery
cursors, closes each day after its local midnight (journals `kpi_daily`, and an `alert` when a
device is below its target), and answers "today so far" from memory."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.clock import ClockSample, ClockWatch
from edge.kpi.config import KpiConfig
from edge.kpi.days import Days
from edge.kpi.engine import UP, Fold, PointPlan, new_day, plans_of
from edge.kpi.figures import EDGES, add_delays, day_figures
from edge.kpi.store import RESTORE_GAPS, KpiStore
from edge.model import Event, Severity

if TYPE_CHECKING:
    from edge.plugins import ComponentContext
    from edge.store.reader import JournalQueries

log = logging.getLogger("edge.kpi")

#: the journal cursor: retention keeps what the fold has not read (the same name as
#: edge.kpi.plugin.CURSOR, which the manifest reads without importing this module)
CURSOR = "kpi"

CHUNK = 50_000  # journal records per fold step (one aggregate, one transaction)
MARGIN_S = 3600.0  # records a little out of ts order still land in their own day
STALE_S = 60.0  # without records this long, open intervals are counted up to now anyway


def fold_step(fold: Fold, journal: JournalQueries, upto: int) -> None:
    """Fold the journal's records after the fold's position up to `upto` (one chunk)."""
    after = fold.state["pos"]
    lo = journal.first_at_or_after(after + 1)
    hi = journal.last_at_or_before(upto)
    bounds: list[float] = []
    if lo is not None and hi is not None:
        _day, _start, end = fold.cal.at(min(lo[1], hi[1]) - MARGIN_S)
        while end <= max(lo[1], hi[1]) + MARGIN_S:
            bounds.append(end)
            _day, _start, end = fold.cal.at(end)
    counts = journal.reading_counts(after, upto, bounds)
    ordered = journal.events_and_readings_of(after, upto, fold.ordered_points)
    fold.fold(upto, counts, bounds, ordered, journal.first_good_reading_of_device, journal.last_at_or_before)


class KpiComponent:
    name = "kpi"

    def __init__(self, ctx: ComponentContext, config: KpiConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.cal = Days(ctx.site.site.timezone)
        self.plans: dict[str, PointPlan] = plans_of(ctx.site.devices)
        self.store = KpiStore(ctx.state)
        self.fold = Fold(self.cal, self.plans, ctx.site.site.id, self.store.meta("state"), self._load_day)
        self.cursors: dict[str, list[Any]] = self.store.meta("cursors") or {}
        #: closed days whose kpi_daily is not in the journal yet
        self.pending: list[str] = self.store.meta("announce") or []
        self.closed_days = 0
        self.errors = 0
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self.lock = asyncio.Lock()
        self.caught_up = asyncio.Event()
        # steps of the wall clock, measured as the journal's retention measures them: with the
        # runtime's (wall, monotonic) source and judged by its clock trust (edge.clock)
        self._sample: Callable[[], ClockSample] = ctx.clock_sample
        self.trust = ctx.clock_trust
        self._watch = ClockWatch(ctx.site.clock.max_step)
        #: why no day closes and nothing is deleted now (a step of the clock not yet followed by a
        #: trusted check), None when the clock is believed; kept across a restart
        self.clock_paused: str | None = self.store.meta("clock_paused")
        #: spans of time whose records a restore left out of the journal (edge.kpi.store.restored)
        self.restore_gaps: list[dict[str, Any]] = self.store.meta(RESTORE_GAPS) or []
        self._paused_at: float | None = None  # monotonic time of the step (None: before this run)
        self._started_mono = self._sample().mono

    def _load_day(self, day: str) -> dict[str, Any] | None:
        found = self.store.day(day)
        return found[0] if found is not None else None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        # gateway_started of this run goes in before the first fold: until the fold has seen it,
        # the gateway's last state may be "up" from a run that died
        await self.ctx.journal.flush()
        await self.ctx.journal.register_cursor(CURSOR, "kpi", self.fold.state["pos"])
        await self.step()
        self._task = self.ctx.spawn(self._run(), "kpi")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.ctx.journal.flush()  # the devices have stopped: fold their last records
            await self.step(advance=False)

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.step()
            except Exception as exc:  # a bad step is retried at the next tick, never fatal
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("kpi step failed")

    async def reload(self) -> None:
        """The site file was reloaded: figures follow the devices now in it. A device removed or
        disabled is counted up to now and then no more (its stored past days stay); a device
        added is observed from its first record. The `kpi:` section itself needs a restart."""
        async with self.lock:
            self.plans = plans_of(self.ctx.site.devices)
            now = self.ctx.clock()
            last_ts = self.fold.state["last_ts"] or now
            self.fold.replan(self.plans, min(now, max(last_ts, now - STALE_S)))
        self.wake()

    def wake(self) -> None:
        """Run a step now (tests and the API's "today so far" use it)."""
        self._wake.set()

    # ------------------------------------------------------------ one step
    async def step(self, advance: bool = True) -> None:
        """Fold everything committed, sample the cursors, advance to now, close finished days."""
        async with self.lock:
            journal = self.ctx.journal
            # one reading of the clock for the whole step, taken before the fold: records stamped
            # after a step find its gap already there, and a step after this reading is acted on
            # by the next step only
            now = await self._watch_clock()
            target = journal.committed_seq
            while self.fold.state["pos"] < target:
                upto = min(target, self.fold.state["pos"] + CHUNK)
                await asyncio.to_thread(fold_step, self.fold, journal, upto)
                if self.fold.state["pos"] < target:
                    await self._commit(now)
            await asyncio.to_thread(self._sample_cursors, now)
            closed: dict[str, dict[str, Any]] = {}
            starts: dict[str, dict[str, Any]] = {}
            gw = self.fold.state["gw"]
            if advance and gw is not None and gw[0] == UP:
                today, start, _end = self.cal.at(now)
                trusted = self.clock_paused is None
                if trusted and gw[1] < start and self.store.day_start(today) is None:
                    self.fold.advance(start)
                    starts[today] = copy.deepcopy(self.fold.state)
                # up to the newest record folded: a record still on its way to the journal must
                # not find its device's interval already counted in the state before it
                last_ts = self.fold.state["last_ts"] or now
                self.fold.advance(min(now, max(last_ts, now - STALE_S)), overdue_until=now - STALE_S)
                if trusted:  # an untrusted clock's midnight may be hours or years from the real one
                    if self.fold.alert_ops and self._due_to_close(now):
                        # a day's figures read its alerts from the store: the alerts and the
                        # acknowledgements this step folded (a backlog) must be there first
                        await self._commit(now)
                    closed = self._close_days(now)
            # a day is marked closed and due upstream in one transaction; its kpi_daily goes
            # into the journal after, so a crash in between sends it at the next start
            self.pending = sorted(set(self.pending) | set(closed))
            await self._commit(now, closed=closed, starts=starts)
            self.caught_up.set()
        if self.pending:
            await self._announce_pending(closed)
        await journal.set_cursor(CURSOR, self.fold.state["pos"], kind="kpi")

    async def _watch_clock(self) -> float:
        """A step of the wall clock is a gap in every figure (neither up nor down), and from it no
        day closes and `keep` deletes nothing until the clock's trust, checked after the step,
        says the clock is trusted (the rule of the journal's retention, edge.clock). Returns the
        wall clock of the sample."""
        before = self._watch.last
        sample = self._sample()
        step = self._watch.observe(sample)
        if step is not None and before is not None and step.mono_elapsed >= 0:
            if step.step > 0:
                # the step happened somewhere between the two samples: these seconds were surely
                # never lived (at most one sampling interval of the gap is counted as lived)
                self.fold.skip(sample.wall - step.step, before.wall + step.step)
            else:
                self.fold.rewind(sample.wall)
            self.clock_paused = f"the wall clock stepped {step.step:+.0f} s; waiting for a trusted clock"
            self._paused_at = sample.mono
            await asyncio.to_thread(self.store.set_meta, "clock_paused", self.clock_paused)
            log.warning("kpi: %s (%s)", self.clock_paused, step.describe())
            return sample.wall
        if self.clock_paused is None:
            return sample.wall
        trust = self.trust
        if trust is not None:
            seen = trust.last_sample  # before `trusted`: see ClockTrust.last_sample
            after = self._paused_at if self._paused_at is not None else self._started_mono
            if seen is None or seen.mono <= after or not trust.trusted:
                return sample.wall
        log.info("kpi: the clock is trusted again; days close and old days are deleted again")
        self.clock_paused = self._paused_at = None
        await asyncio.to_thread(self.store.set_meta, "clock_paused", None)
        return sample.wall

    async def _announce_pending(self, closed: dict[str, dict[str, Any]]) -> None:
        for day in self.pending:
            figures = closed.get(day)
            if figures is None:
                found = self.store.day(day)
                figures = found[2] if found is not None else None
            if figures is not None:
                await self._announce(day, figures)
        await self.ctx.journal.flush()
        self.pending = []
        await asyncio.to_thread(self.store.set_meta, "announce", [])

    async def _commit(
        self,
        now: float,
        closed: dict[str, dict[str, Any]] | None = None,
        starts: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        fold = self.fold
        days = {d: fold.days[d] for d in fold.dirty if d in fold.days}
        keep_from = None
        if self.clock_paused is None:  # an untrusted clock's "today" may be far from the real one
            keep_from = (
                dt.date.fromisoformat(self.cal.day_of(now)) - dt.timedelta(days=self.config.keep)
            ).isoformat()
        ops, fold.alert_ops = fold.alert_ops, []
        state = copy.deepcopy(fold.state)
        await asyncio.to_thread(
            self.store.commit,
            days=days,
            state=state,
            alert_ops=ops,
            day_of=self.cal.day_of,
            meta={"cursors": self.cursors, "announce": self.pending},
            day_starts=starts,
            closed=closed,
            keep_from=keep_from,
        )
        fold.dirty.clear()
        today = self.cal.day_of(now)
        for d in [d for d in fold.days if d < today and self._is_closed(d)]:
            fold.days.pop(d, None)  # a closed past day need not stay in memory

    def _is_closed(self, day: str) -> bool:
        found = self.store.day(day)
        return found is not None and found[1]

    def _sample_cursors(self, now: float) -> None:
        """Each sink's and consumer's cursor moved since the last sample: the records it passed
        were acknowledged by `updated`; their delays spread between their oldest and newest ts."""
        journal = self.ctx.journal
        for name, (kind, seq, updated) in journal.cursors().items():
            if kind not in ("sink", "consumer"):
                continue
            prev = self.cursors.get(name)
            self.cursors[name] = [kind, seq, updated]
            if prev is None or seq <= prev[1]:
                continue
            lo = journal.first_at_or_after(prev[1] + 1)
            hi = journal.last_at_or_before(seq)
            if lo is None or hi is None:
                continue
            acc = self.fold.day(self.cal.day_of(hi[1]))
            if acc is None:
                continue
            slot = acc.setdefault("dl", {}).setdefault(
                name, {"kind": kind, "seq": seq, "hist": [0.0] * len(EDGES)}
            )
            slot["seq"] = max(slot["seq"], seq)
            add_delays(slot["hist"], updated - hi[1], updated - lo[1], seq - prev[1])
        for day, acc in self.fold.days.items():  # every day's share uses the newest cursor
            for name, slot in acc.get("dl", {}).items():
                if name in self.cursors:
                    slot["seq"] = self.cursors[name][1]
                    self.fold.dirty.add(day)

    # ------------------------------------------------------------ closing a day
    def _due_to_close(self, now: float) -> list[str]:
        """The days not closed yet whose end was `close_after` or more before `now`."""
        due = []
        for day in sorted(set(self.store.open_days()) | set(self.fold.days)):
            _start, end = self.cal.bounds_of(day)
            if now >= end + self.config.close_after and not self._is_closed(day):
                due.append(day)
        return due

    def _close_days(self, now: float) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for day in self._due_to_close(now):
            _start, end = self.cal.bounds_of(day)
            gw = self.fold.state["gw"]
            if gw is not None and gw[1] < end:
                self.fold.advance(end)
            acc = self.fold.days.get(day) or self._load_day(day) or new_day()
            out[day] = self.figures(day, acc, closed=True, now=now)
        return out

    def figures(
        self, day: str, acc: dict[str, Any], *, closed: bool, now: float, device: str | None = None
    ) -> dict[str, Any]:
        cursors = {n: (c[0], int(c[1]), float(c[2])) for n, c in self.cursors.items()}
        out = day_figures(
            day, acc, self.plans, self.config, self.store.alerts_of(day), cursors, now, closed, device
        )
        if not closed:
            out["clock_paused"] = self.clock_paused
        out["restore_gap"] = self.restore_gap(day)
        return out

    def restore_gap(self, day: str) -> dict[str, Any] | None:
        """The newest restore's gap that touches `day` (records journaled in it are not in the
        journal: the day's figures count only those it holds), None when none does."""
        start, end = self.cal.bounds_of(day)
        touching = [g for g in self.restore_gaps if g["from"] < end and g["until"] > start]
        return touching[-1] if touching else None

    async def _announce(self, day: str, figures: dict[str, Any]) -> None:
        """The closed day upstream (one `kpi_daily` per site and day) and, below a target, an
        alert in the shape the rules engine journals."""
        site = self.ctx.site.site.id
        payload = {
            "day": day,
            "timezone": self.cal.name,
            "site": figures["site"],
            "gateway": figures["gateway"],
            "alerts": figures["alerts"],
            "rule_actions": figures["rule_actions"],
            "delivery": figures["delivery"],
            "clock_gap_s": figures.get("clock_gap_s", 0.0),
            "restore_gap": figures.get("restore_gap"),
            "devices": {
                d["id"]: {
                    "availability": d["availability"],
                    "completeness": d["completeness"],
                    "observed_s": d["observed_s"],
                    "online_s": d["online_s"],
                    "below_target": d["below_target"],
                    "points": d["points"],
                }
                for d in figures["devices"]
            },
            "privacy": "public",
        }
        self.ctx.hub.publish_event(Event("kpi_daily", site, Severity.INFO, payload, self.ctx.clock()))
        self.closed_days += 1
        below = figures["below_target"]
        if below:
            worst = "; ".join(
                f"{b['device']} {b['figure']} {b['value'] * 100:.2f}% < {b['target'] * 100:g}%"
                for b in below[:10]
            )
            more = f" (+{len(below) - 10} more)" if len(below) > 10 else ""
            fired = self.ctx.clock()
            self.ctx.hub.publish_event(
                Event(
                    "alert",
                    "kpi",
                    Severity.WARNING,
                    {
                        "rule": "kpi",
                        "name": "operator KPI below target",
                        "state": "fired",
                        "message": f"{day}: {worst}{more}",
                        "point": None,
                        "value": len(below),
                        "day": day,
                        "below_target": below,
                        "repeat": False,
                        "first_fired": fired,
                    },
                    fired,
                )
            )

    # ------------------------------------------------------------ reads for the API
    def today(self) -> dict[str, Any]:
        now = self.ctx.clock()
        day = self.cal.day_of(now)
        acc = self.fold.days.get(day) or self._load_day(day) or new_day()
        return self.figures(day, acc, closed=False, now=now)

    def status(self) -> dict[str, Any]:
        return {
            "position": self.fold.state["pos"],
            "days_closed": self.closed_days,
            "errors": self.errors,
            "last_error": self.last_error,
            "clock_paused": self.clock_paused,
        }


def create(ctx: ComponentContext) -> KpiComponent | None:
    cfg = ctx.site.sections.get("kpi")
    if not isinstance(cfg, KpiConfig) or not cfg.enabled:
        if ctx.journal.get_cursor(CURSOR) is not None:
            # KPIs turned off: a cursor nobody moves would hold retention back for good
            ctx.spawn(ctx.journal.remove_cursor(CURSOR), "kpi-cursor")
        return None
    return KpiComponent(ctx, cfg)
