"""The KPIs without a running gateway: the stored figures for `edge kpi show|export`, and
`edge kpi rebuild --day`, which folds one past day again from the journal."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from edge.kpi.component import CHUNK, fold_step
from edge.kpi.config import KpiConfig
from edge.kpi.days import Days
from edge.kpi.engine import DOWN, DOWN_STATES, RESTART, UP, Fold, PointPlan, plans_of
from edge.kpi.figures import day_figures
from edge.kpi.store import KpiStore
from edge.store.rows import EventMatch

if TYPE_CHECKING:
    from edge.config import Site
    from edge.store.journal import Journal
    from edge.store.reader import JournalQueries, Row


def _payload(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class RebuildError(RuntimeError):
    """A day that cannot be rebuilt; the message says why and that nothing was changed."""


@dataclass
class OfflineKpi:
    """What `edge.kpi.api.report` reads, from the files of a site that may not be running."""

    site: Site
    cal: Days = field(init=False)
    plans: dict[str, PointPlan] = field(init=False)
    config: KpiConfig = field(init=False)
    store: KpiStore = field(init=False)

    def __post_init__(self) -> None:
        from edge.state import StateDB

        cfg = self.site.sections.get("kpi")
        self.config = cfg if isinstance(cfg, KpiConfig) else KpiConfig.model_validate({})
        self.cal = Days(self.site.site.timezone)
        self.plans = plans_of(self.site.devices)
        self.store = KpiStore(
            StateDB(self.site.storage.resolved_state_path(), journal=self.site.storage.path)
        )
        self.ctx = SimpleNamespace(clock=time.time)
        self.fold = SimpleNamespace(days={})
        self._sealer: Any = None
        self._cursors = self._read_cursors()

    def _read_cursors(self) -> dict[str, tuple[str, int, float]]:
        journal = self._journal()
        if journal is None:
            return {}
        try:
            return {n: c for n, c in journal.cursors().items() if c[0] in ("sink", "consumer")}
        finally:
            journal.close_sync()

    def _journal(self) -> Journal | None:
        from edge.store.journal import Journal

        path = self.site.storage.path
        return Journal.open_readonly(path) if Path(path).exists() else None

    def _open_sealed(self, path: str) -> None:
        """Where the site seals personal and sensitive records, open them as the gateway does:
        a sealed alert or acknowledgement would otherwise count as neither."""
        key_file = self.site.privacy.master_key_file
        if key_file is None or self._sealer is not None:
            return
        from edge.privacy.atrest import Sealer, register
        from edge.privacy.keyfile import KeyFileError
        from edge.privacy.keys import WrongMasterKey

        try:
            self._sealer = Sealer.open(path, key_file)
        except (KeyFileError, WrongMasterKey) as exc:
            raise RebuildError(f"privacy.master_key_file: {exc} (nothing was changed)") from None
        register(path, self._sealer)

    def figures(
        self, day: str, acc: dict[str, Any], *, closed: bool, now: float, device: str | None = None
    ) -> dict[str, Any]:
        return day_figures(
            day, acc, self.plans, self.config, self.store.alerts_of(day), self._cursors, now, closed, device
        )

    def close(self) -> None:
        self.store.db.close()
        if self._sealer is not None:
            from edge.privacy.atrest import unregister

            unregister(self.site.storage.path, self._sealer)
            self._sealer.close()
            self._sealer = None

    def _seed(self, journal: JournalQueries, start: float, first: int) -> dict[str, Any] | None:
        """The fold's state at `start` when none was saved: the gateway and each device as their
        last events before the day's first record (seq `first`) leave them. None when the journal
        holds nothing before the day (the day the KPIs began: counted from its first record)."""
        if first <= 1 or journal.last_at_or_before(first - 1) is None:
            return None
        site = self.site.site.id

        def newest(kind: str, source: str) -> Row | None:
            rows = journal.newest_events(EventMatch(kind=kind, source=source, before_seq=first), 0, 1)
            return rows[0] if rows else None

        started, stopped = newest("gateway_started", site), newest("gateway_stopped", site)
        gw_up = stopped is None or (started is not None and started[0] > stopped[0])
        restarted_at = started[0] if started is not None else 0  # a start makes every device available
        devices: dict[str, list[Any]] = {}
        for dev in sorted({p.device for p in self.plans.values()}):
            said, crashed = newest("device_state", dev), newest("driver_restart", dev)
            seen = (said is not None or crashed is not None) or journal.first_good_reading_of_device(
                dev, 0, first - 1
            ) is not None
            if not seen:
                continue  # observed from its first record, as live
            state = UP
            if crashed is not None and crashed[0] > restarted_at and (said is None or crashed[0] > said[0]):
                # down until its next sign of life
                if journal.first_good_reading_of_device(dev, crashed[0], first - 1) is None:
                    state = RESTART
            elif said is not None and said[0] > restarted_at:
                state = DOWN if str(_payload(said[7]).get("state", "")) in DOWN_STATES else UP
            devices[dev] = [state, start]
        points: dict[str, list[Any]] = {}
        for plan in self.plans.values():
            if plan.device not in devices or plan.method not in ("report_every", "on_change"):
                continue
            last = journal.newest_readings(plan.id, 0.0, start, 0, 1)
            good = bool(last) and (last[0][4] or 0) & 3 == 0
            if plan.method == "report_every":
                # overdue counted from the day's start on, as the live fold would have
                points[plan.id] = [float(last[0][1]) if good else start, start, False, None]
            else:
                counts = gw_up and devices[plan.device][0] == UP
                points[plan.id] = [None, None, good, start if good and counts else None]
        return {
            "pos": first - 1,
            "gw": [UP if gw_up else DOWN, start],
            "dev": devices,
            "pts": points,
            "last_ts": start,
        }

    def rebuild(self, day: str) -> dict[str, Any]:
        """Fold `day` again from the journal, from the state saved at its start (or, without
        one, from its first record); returns the day's figures. The stored day is replaced only
        when the journal still holds the whole day."""
        start, end = self.cal.bounds_of(day)
        if end > time.time():
            raise RebuildError(f"{day} is not over yet; only a past day can be rebuilt (nothing was changed)")
        journal = self._journal()
        if journal is None:
            raise RebuildError(f"{self.site.storage.path}: no journal (nothing was changed)")
        try:
            self._open_sealed(self.site.storage.path)
        except RebuildError:
            journal.close_sync()
            raise
        try:
            stored = self.store.day(day)
            oldest = journal.first_at_or_after(0)
            known_first = stored[0]["rec"][1] if stored is not None else None
            lost = oldest is not None and (
                (known_first is not None and known_first < oldest[0])  # the fold saw older ones
                or (known_first is None and oldest[0] > 1 and oldest[1] > start)
            )
            if lost:
                assert oldest is not None
                raise RebuildError(
                    f"the journal no longer holds all of {day} (its oldest record, seq {oldest[0]}, is from "
                    f"{self.cal.day_of(oldest[1])}); the stored figures of {day} are kept unchanged"
                )
            first = journal.first_seq_since(start)
            last = journal.last_seq_before(end)
            if first is None or last is None or last < first:
                raise RebuildError(f"the journal holds no record of {day} (nothing was changed)")
            saved = self.store.day_start(day)
            state = copy.deepcopy(saved) if saved is not None else self._seed(journal, start, first)
            fold = Fold(self.cal, self.plans, self.site.site.id, state, only_day=day)
            fold.state["pos"] = first - 1
            while fold.state["pos"] < last:
                fold_step(fold, journal, min(last, fold.state["pos"] + CHUNK))
            fold.advance(end)  # what held at the day's last record held until its end
        finally:
            journal.close_sync()
        data = fold.days.get(day)
        if data is None:
            raise RebuildError(f"the journal holds no record of {day} (nothing was changed)")
        stored = self.store.day(day)
        if stored is not None and "dl" in stored[0]:
            data["dl"] = stored[0]["dl"]  # delivery is sampled from the cursors live, not journaled
        figures = self.figures(day, data, closed=True, now=time.time())
        self.store.replace_day(day, data, figures if stored is not None and stored[1] else None)
        return figures
