"""The fold: journal records in seq order become per-day accumulators (docs/kpi.md defines them).

`Fold` holds the state that carries from one record to the next (the gateway up or down, each
device's state, each on-change point's last quality and last good report) and the accumulators of
the days it touched. Both are plain JSON-able dicts, so the component persists them with the fold
position in one transaction. Plain polled readings are counted by one aggregate per chunk of the
journal (`reading_counts`); events and the readings of on-change points, few by nature, are
walked one by one, because their order is what the figures are made of.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.kpi.days import Days
from edge.store.rows import ERASED_PAYLOAD

UP, DOWN, RESTART = "up", "down", "restart"
MAX_GAPS = 100  # the newest steps of the clock the fold remembers (a gap older than a day is moot)
DOWN_STATES = ("offline", "stopped")
ERASED = json.loads(ERASED_PAYLOAD)  # a record's payload once its subject is forgotten
RULE_EVENTS_NOT_ACTIONS = ("rule_action_failed", "rule_error", "rule_rate_limited", "rule_pack_error")
# what a chunk walks one by one: (seq, ts, point or source, quality, kind, severity, payload)
Ordered = tuple[int, float, str, "int | None", "str | None", "str | None", "str | None"]


@dataclass(frozen=True)
class PointPlan:
    """How one point's completeness is measured (docs/kpi.md, "Completeness")."""

    id: str
    device: str
    #: "count" (every poll is journaled), "report_every" (on change, at least every N s) or
    #: "on_change" (on change only); None: no poll interval known, not measured
    method: str | None
    poll: float | None
    report_every: float = 0.0

    @property
    def tolerance(self) -> float:
        """How late a report_every report may come before the gap counts: the hub journals the
        first poll at or after report_every, one poll later at worst."""
        return self.poll if self.poll else 0.1 * self.report_every


def poll_interval(device: Any, point: Any) -> float | None:
    """A point's poll interval from its config (`poll` or `interval` on the point, else on the
    device: Modbus and the simulator have them; BLE advertisements and cameras have none)."""
    for obj in (point, device):
        for key in ("poll", "interval"):
            value = getattr(obj, key, None)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                return float(value)
    return None


def plans_of(devices: Iterable[Any]) -> dict[str, PointPlan]:
    """The plan of every configured point of the enabled devices."""
    out: dict[str, PointPlan] = {}
    for dev in devices:
        if not dev.enabled:
            continue
        by_name = {p.name: p for p in getattr(dev, "points", []) or []}
        for info in dev.point_infos():
            poll = poll_interval(dev, by_name.get(info.name))
            if info.report_every > 0:
                method: str | None = "report_every"
            elif info.deadband > 0:
                method = "on_change"
            else:
                method = "count" if poll else None
            out[info.id] = PointPlan(info.id, dev.id, method, poll, float(info.report_every))
    return out


def new_day() -> dict[str, Any]:
    return {
        "gw": {"up": 0.0, "down": 0.0, "stops": 0, "starts": 0},
        "dev": {},
        "pts": {},
        "act": [0, 0],
        "rec": [0, None, None],
    }


class Fold:
    """See the module docstring. `state` and `days` are what the component persists."""

    def __init__(
        self,
        days: Days,
        plans: Mapping[str, PointPlan],
        site_id: str,
        state: dict[str, Any] | None = None,
        load_day: Callable[[str], dict[str, Any] | None] = lambda day: None,
        only_day: str | None = None,
    ) -> None:
        self.cal = days
        self.site_id = site_id
        self._plan(plans)
        self.state: dict[str, Any] = state or {"pos": 0, "gw": None, "dev": {}, "pts": {}, "last_ts": None}
        #: [from, to) spans of wall time a forward step of the clock skipped: no interval counts in them
        self.state.setdefault("gaps", [])
        self.days: dict[str, dict[str, Any]] = {}
        self.dirty: set[str] = set()
        self._load_day = load_day
        self.only_day = only_day  # a rebuild: nothing is added to any other day
        #: alert bookkeeping of this chunk: ("fired", seq, ts, source, severity, key, firing) /
        #: ("ack", acked seq, ts) / ("cleared", source, ts, key); key: `alert_key`, firing:
        #: `firing_of`
        self.alert_ops: list[tuple[Any, ...]] = []

    def _plan(self, plans: Mapping[str, PointPlan]) -> None:
        self.plans = plans
        self.devices = {p.device for p in plans.values()}
        self.ordered_points = sorted(
            p.id for p in plans.values() if p.method in ("report_every", "on_change")
        )
        self.by_device: dict[str, list[PointPlan]] = {}
        for p in plans.values():
            self.by_device.setdefault(p.device, []).append(p)

    def replan(self, plans: Mapping[str, PointPlan], t: float) -> None:
        """The site's devices changed (a reload): a device gone, or disabled, is accounted up to
        `t` and then followed no more; a device added is observed from its first record, and a
        point whose plan changed is measured by its new plan from now on."""
        gone = self.devices - {p.device for p in plans.values()}
        for dev in gone:
            self._flush_device(dev, t)
            for plan in self.by_device.get(dev, ()):
                self._flush_point(plan, t)
        self._plan(plans)
        for dev in gone:
            self.state["dev"].pop(dev, None)
        for pid in [pid for pid in self.state["pts"] if pid not in plans]:
            del self.state["pts"][pid]

    # ------------------------------------------------------------ day accumulators
    def day(self, key: str) -> dict[str, Any] | None:
        if self.only_day is not None and key != self.only_day:
            return None
        acc = self.days.get(key)
        if acc is None:
            acc = self._load_day(key) or new_day()
            self.days[key] = acc
        self.dirty.add(key)
        return acc

    def _split(self, a: float, b: float) -> Iterable[tuple[dict[str, Any], float]]:
        for lo, hi in self._outside_gaps(a, b):
            for key, secs in self.cal.split(lo, hi):
                acc = self.day(key)
                if acc is not None:
                    yield acc, secs

    def _outside_gaps(self, a: float, b: float) -> list[tuple[float, float]]:
        """The pieces of [a, b) outside the clock's gaps: a step is neither up nor down time."""
        pieces = [(a, b)]
        for g0, g1 in self.state["gaps"]:
            if g1 <= a or g0 >= b:
                continue
            cut: list[tuple[float, float]] = []
            for lo, hi in pieces:
                if lo < g0:
                    cut.append((lo, min(hi, g0)))
                if hi > g1:
                    cut.append((max(lo, g1), hi))
            pieces = cut
        return pieces

    # ------------------------------------------------------------ steps of the wall clock
    def skip(self, lo: float, hi: float) -> None:
        """The wall clock stepped forward over [lo, hi): those seconds were never lived, so no
        interval counts in them. The days at either end say how much of them the step took."""
        if hi <= lo:
            return
        self.state["gaps"] = [*self.state["gaps"], [lo, hi]][-MAX_GAPS:]
        first, _s, first_end = self.cal.at(lo)
        last, last_start, _e = self.cal.at(hi)
        for key, secs in {first: min(hi, first_end) - lo, last: hi - max(lo, last_start)}.items():
            acc = self.day(key)
            if acc is not None:
                acc["clock_gap_s"] = acc.get("clock_gap_s", 0.0) + secs

    def rewind(self, t: float) -> None:
        """The wall clock stepped back to `t`: the open intervals start again from it (what was
        counted beyond it stays where it was counted, nothing is counted twice)."""
        gw = self.state["gw"]
        if gw is not None:
            gw[1] = min(gw[1], t)
        for st in self.state["dev"].values():
            st[1] = min(st[1], t)
        for ps in self.state["pts"].values():
            for i in (0, 1, 3):
                if ps[i] is not None:
                    ps[i] = min(ps[i], t)
        if self.state["last_ts"] is not None:
            self.state["last_ts"] = min(self.state["last_ts"], t)

    # ------------------------------------------------------------ intervals
    def _flush_gateway(self, t: float) -> None:
        gw = self.state["gw"]
        if gw is None or t <= gw[1]:
            return
        for acc, secs in self._split(gw[1], t):
            acc["gw"][gw[0]] += secs
        gw[1] = t

    def _flush_device(self, dev: str, t: float) -> None:
        st = self.state["dev"].get(dev)
        if st is None or t <= st[1]:
            return
        gw_up = self.state["gw"] is not None and self.state["gw"][0] == UP
        field = "up" if gw_up and st[0] == UP else "down"
        for acc, secs in self._split(st[1], t):
            d = acc["dev"].setdefault(dev, {"up": 0.0, "down": 0.0})
            d[field] += secs
        st[1] = t

    def _point(self, pid: str) -> list[Any]:
        # [last good ts, missing accounted up to, last quality good, good since (on_change)]
        return self.state["pts"].setdefault(pid, [None, None, False, None])

    def _flush_point(self, plan: PointPlan, t: float) -> None:
        ps = self.state["pts"].get(plan.id)
        if ps is None:
            return
        if plan.method == "report_every" and ps[0] is not None:
            start = max(ps[0] + plan.report_every + plan.tolerance, ps[1] or ps[0])
            if t > start:
                for acc, secs in self._split(start, t):
                    acc["pts"].setdefault(plan.id, [0, 0, 0.0, 0.0])[2] += secs
            ps[1] = max(t, ps[1] or t)
        elif plan.method == "on_change" and ps[3] is not None and t > ps[3]:
            for acc, secs in self._split(ps[3], t):
                acc["pts"].setdefault(plan.id, [0, 0, 0.0, 0.0])[3] += secs
            ps[3] = t

    def _device_counts_good(self, dev: str) -> bool:
        st = self.state["dev"].get(dev)
        gw = self.state["gw"]
        return st is not None and st[0] == UP and gw is not None and gw[0] == UP

    def _sync_on_change(self, dev: str, t: float) -> None:
        """Start or stop the good time of the device's on-change points after a state change."""
        ok = self._device_counts_good(dev)
        for plan in self.by_device.get(dev, ()):
            if plan.method != "on_change":
                continue
            ps = self.state["pts"].get(plan.id)
            if ps is None:
                continue
            if ok and ps[2] and ps[3] is None:
                ps[3] = t
            elif not (ok and ps[2]) and ps[3] is not None:
                self._flush_point(plan, t)
                ps[3] = None

    def advance(self, t: float, overdue_until: float | None = None) -> None:
        """Account every open interval up to `t` (a tick of the live clock, a day's end); reports
        overdue only up to `overdue_until` (default `t`): a tick leaves the newest seconds to the
        reports still on their way to the journal."""
        self._flush_gateway(t)
        for dev in list(self.state["dev"]):
            self._flush_device(dev, t)
        horizon = t if overdue_until is None else min(t, overdue_until)
        for pid in list(self.state["pts"]):
            plan = self.plans.get(pid)
            if plan is not None:
                self._flush_point(plan, horizon if plan.method == "report_every" else t)

    def _set_device(self, dev: str, state: str, t: float) -> None:
        st = self.state["dev"].get(dev)
        if st is None:
            return
        gw = self.state["gw"]
        if t < st[1] and gw is not None and gw[0] == UP and (st[0] == UP) != (state == UP):
            # a tick counted past this change while its event was on its way: move the seconds
            # since the change to the new state (not before the gateway's own last change)
            start = max(t, gw[1] if gw[1] < st[1] else t)
            old, new = ("up", "down") if st[0] == UP else ("down", "up")
            for acc, secs in self._split(start, st[1]):
                d = acc["dev"].setdefault(dev, {"up": 0.0, "down": 0.0})
                d[old] -= secs
                d[new] += secs
        t = max(t, st[1])
        self._flush_device(dev, t)
        st[0] = state
        self._sync_on_change(dev, t)

    def _set_gateway(self, state: str, t: float) -> None:
        gw = self.state["gw"]
        t = max(t, gw[1])
        self._flush_gateway(t)
        for dev in self.state["dev"]:
            self._flush_device(dev, t)
        gw[0] = state
        for dev in self.state["dev"]:
            self._sync_on_change(dev, t)

    def _see_device(self, dev: str, ts: float) -> None:
        if dev in self.devices and dev not in self.state["dev"]:
            self.state["dev"][dev] = [UP, ts]
            for plan in self.by_device.get(dev, ()):
                ps = self._point(plan.id)
                if ps[0] is None and plan.method == "report_every":
                    ps[0] = ps[1] = ts  # a report is due report_every after the device appears

    # ------------------------------------------------------------ one chunk
    def fold(
        self,
        upto: int,
        counts: list[tuple[str, int, int, int, float, int, int]],
        bounds: list[float],
        ordered: list[Ordered],
        first_good: Callable[[str, int, int], tuple[int, float] | None],
        last_before: Callable[[int], tuple[int, float] | None],
    ) -> None:
        """Fold the records after `state["pos"]` up to `upto`: `counts` from `reading_counts`
        with `bounds`, `ordered` from `events_and_readings_of`."""
        after = self.state["pos"]
        bucket_day = [self.cal.day_of(b - 1) for b in bounds] + (
            [self.cal.day_of(bounds[-1])] if bounds else []
        )
        first_ts: dict[str, float] = {}
        for point, b, good, total, oldest, lo, hi in counts:
            dev = point.partition(".")[0]
            first_ts[dev] = min(first_ts.get(dev, oldest), oldest)
            acc = self.day(bucket_day[b] if bounds else self.cal.day_of(oldest))
            if acc is None:
                continue
            rec = acc["rec"]
            rec[0] += total
            rec[1] = lo if rec[1] is None else min(rec[1], lo)
            rec[2] = hi if rec[2] is None else max(rec[2], hi)
            if point in self.plans:
                slot = acc["pts"].setdefault(point, [0, 0, 0.0, 0.0])
                slot[0] += good
                slot[1] += total
        for row in ordered:
            if row[2] in self.devices:
                first_ts[row[2]] = min(first_ts.get(row[2], row[1]), row[1])
            elif row[4] is None:
                dev = row[2].partition(".")[0]
                first_ts[dev] = min(first_ts.get(dev, row[1]), row[1])
        if self.state["gw"] is None and (counts or ordered):
            start = min([*first_ts.values(), *(r[1] for r in ordered[:1])], default=None)
            if start is not None:
                self.state["gw"] = [UP, start]
        for dev, ts in sorted(first_ts.items(), key=lambda kv: kv[1]):
            self._see_device(dev, ts)
        # devices waiting for a sign of life after a driver restart
        waiting: list[tuple[int, float, str]] = []
        for dev, st in self.state["dev"].items():
            if st[0] == RESTART:
                hit = first_good(dev, after, upto)
                if hit is not None:
                    waiting.append((hit[0], hit[1], dev))
        waiting.sort()
        last_ts = self.state["last_ts"]
        for row in ordered:
            seq, ts = row[0], row[1]
            while waiting and waiting[0][0] < seq:
                _s, wts, wdev = waiting.pop(0)
                if self.state["dev"][wdev][0] == RESTART:
                    self._set_device(wdev, UP, wts)
            extra = self._apply(row, upto, first_good, last_before, last_ts)
            if extra is not None:
                waiting.append(extra)
                waiting.sort()
            last_ts = ts if last_ts is None else max(last_ts, ts)
        for _s, wts, wdev in waiting:
            if self.state["dev"][wdev][0] == RESTART:
                self._set_device(wdev, UP, wts)
        for _point, _b, _good, _total, oldest, _lo, _hi in counts:
            last_ts = oldest if last_ts is None else max(last_ts, oldest)
        if ordered or counts:
            newest = last_before(upto)
            if newest is not None:
                last_ts = newest[1] if last_ts is None else max(last_ts, newest[1])
        self.state["last_ts"] = last_ts
        self.state["pos"] = upto

    def _apply(
        self,
        row: Ordered,
        upto: int,
        first_good: Callable[[str, int, int], tuple[int, float] | None],
        last_before: Callable[[int], tuple[int, float] | None],
        last_ts: float | None,
    ) -> tuple[int, float, str] | None:
        seq, ts, src, quality, kind, severity, raw = row
        if kind is None:  # a reading of an on-change point
            plan = self.plans.get(src)
            if plan is None:
                return None
            ps = self._point(src)
            good = (quality or 0) & 3 == 0
            if plan.method == "report_every":
                if good:
                    self._flush_point(plan, ts)
                    if ps[0] is not None and ps[1] is not None and ts < ps[1]:
                        # a tick counted past this report while it was on its way: give back
                        # the seconds it covers
                        lo = max(ts, ps[0] + plan.report_every + plan.tolerance)
                        hi = min(ps[1], ts + plan.report_every + plan.tolerance)
                        for acc, secs in self._split(lo, hi):
                            acc["pts"].setdefault(plan.id, [0, 0, 0.0, 0.0])[2] -= secs
                    ps[0] = ts if ps[0] is None else max(ps[0], ts)
                    ps[1] = max(ps[1] or ts, ts)
            else:
                if good and not ps[2]:
                    ps[2] = True
                    if self._device_counts_good(plan.device):
                        ps[3] = ts
                elif not good and ps[2]:
                    self._flush_point(plan, ts)
                    ps[2] = False
                    ps[3] = None
            if good and self.state["dev"].get(plan.device, [None])[0] == RESTART:
                self._set_device(plan.device, UP, ts)
            return None
        payload = _payload(raw)
        acc_key = self.cal.day_of(ts)
        if src == self.site_id and kind == "gateway_started":
            gw = self.state["gw"]
            if gw is not None and gw[0] == UP:  # no gateway_stopped: it died; down since its last record
                prev = last_before(seq - 1)
                self._set_gateway(DOWN, min(prev[1] if prev is not None else ts, ts))
            if self.state["gw"] is None:
                self.state["gw"] = [DOWN, ts]
            self._set_gateway(UP, ts)
            for st in self.state["dev"].values():
                st[0] = UP  # starting counts as available until a device says otherwise
            for dev in self.state["dev"]:
                self._sync_on_change(dev, max(ts, self.state["dev"][dev][1]))
            started = self.day(acc_key)
            if started is not None:
                started["gw"]["starts"] += 1
        elif src == self.site_id and kind == "gateway_stopped":
            if self.state["gw"] is not None:
                self._set_gateway(DOWN, ts)
            stopped = self.day(acc_key)
            if stopped is not None:
                stopped["gw"]["stops"] += 1
        elif kind == "device_state" and src in self.devices:
            state = str(payload.get("state", ""))
            self._set_device(src, DOWN if state in DOWN_STATES else UP, ts)
        elif kind == "driver_restart" and src in self.devices:
            self._set_device(src, RESTART, ts)
            hit = first_good(src, seq, upto)
            return (hit[0], hit[1], src) if hit is not None else None
        elif kind == "alert":
            key = alert_key(src, payload)
            if payload.get("state") == "cleared":
                self.alert_ops.append(("cleared", src, ts, key))
            else:
                firing = firing_of(payload)
                self.alert_ops.append(("fired", seq, ts, src, str(severity or "info"), key, *firing))
        elif kind == "alert_ack":
            acked = payload.get("seq")
            if isinstance(acked, int):
                self.alert_ops.append(("ack", acked, ts))
        elif kind == "rule_action_failed":
            failed = self.day(acc_key)
            if failed is not None:
                failed["act"][1] += 1
        day = self.day(acc_key)
        if day is not None and _rule_action(kind, src, payload):
            day["act"][0] += 1
        if day is not None:
            rec = day["rec"]
            rec[0] += 1
            rec[1] = seq if rec[1] is None else min(rec[1], seq)
            rec[2] = seq if rec[2] is None else max(rec[2], seq)
        return None


def alert_key(source: str, payload: Mapping[str, Any]) -> str:
    """Which alert an `alert` event is an instance of: the rules engine keeps one state per rule
    and key (the point for a point trigger, so a pattern rule such as `bin-*.fill_pct` fires one
    alert per point) and journals the rule as the source and the key's point as `point`; the KPIs'
    own alert is one per day."""
    if "day" in payload:
        return f"{source}/{payload['day']}"
    point = payload.get("point")
    return f"{source}/{point}" if isinstance(point, str) and point else source


#: what a fired `alert` record is (`firing_of`)
NEW, REPEAT, UNMARKED = "new", "repeat", "unmarked"


def firing_of(payload: Mapping[str, Any]) -> tuple[str, float | None]:
    """What a fired `alert` record is, by the marks the rules engine's alerts carry: (NEW, None)
    an incident's first firing (`repeat: false`); (REPEAT, the first firing's time or None) a
    repeat of a `notify: repeat` rule (`repeat: true`, `first_fired`); (UNMARKED, None) a record
    without `repeat`, as the previous release journaled them, which cannot tell the two apart."""
    repeat = payload.get("repeat")
    if repeat is False:
        return NEW, None
    if repeat is True:
        first = payload.get("first_fired")
        if isinstance(first, int | float) and not isinstance(first, bool) and math.isfinite(first):
            return REPEAT, float(first)
        return REPEAT, None
    return UNMARKED, None


def _payload(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _rule_action(kind: str, source: str, payload: Mapping[str, Any]) -> bool:
    """An event a rule's action left: its alerts and events carry the rule as their source, its
    writes are commands `by` `rule:<id>` that succeeded (a failed one is a rule_action_failed).
    An alert whose payload is erased (its resident forgotten: `edge.privacy.payload`) is one too:
    only a rule's alert is sealed under a resident's key, and both its states, fired and cleared,
    count, so its kind (in clear on the row) tells all this needs. Another erased event (a rule's
    `event:` of its own kind, a `command`) cannot be told from a device's or a user's: not
    counted."""
    if kind == "alert" and payload == ERASED:
        return True
    if kind == "command":
        return str(payload.get("by", "")).startswith("rule:") and payload.get("status") == "ok"
    if kind in RULE_EVENTS_NOT_ACTIONS or "below_target" in payload:  # the KPIs' own alert
        return False
    return payload.get("rule") == source and payload.get("state") in ("fired", "cleared")
