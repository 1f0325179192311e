"""The figures of one day from its accumulators (docs/kpi.md defines each), and their CSV."""

from __future__ import annotations

import bisect
import csv
import io
import math
from collections.abc import Iterable, Mapping
from typing import Any

from edge.kpi.config import KpiConfig
from edge.kpi.engine import PointPlan

# delay buckets (seconds) of the delivery histogram: reading time -> acknowledged upstream. From
# 1 s up each edge is at most 1.5 times the one before, to 30 days; the last slot is open.
EDGES: tuple[float, ...] = (
    0.0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300,
    450, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 14400, 21600, 32400, 43200, 64800,
    86400, 129600, 172800, 259200, 345600, 432000, 604800, 864000, 1209600, 1814400, 2592000,
)  # fmt: skip
#: the edges of the histograms kept before these, counts only: a day counted partly with them and
#: stored is carried over into EDGES when it is next counted or read (`delay_hist`)
OLD_EDGES: tuple[float, ...] = (
    0.0, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 604800,
)  # fmt: skip
_K = len(EDGES)


def delay_hist(hist: list[float]) -> list[float]:
    """`hist`, a delay histogram as kept in a day's accumulators, in the layout of EDGES (itself if
    it is, else a new list): 3 * len(EDGES) numbers, the count of each slot (slot i holds
    [EDGES[i], EDGES[i+1]), the last one everything above), then the lowest delay counted in each,
    then the highest. The length tells the layout apart:
    - len(EDGES) zeros: a new histogram (`[0.0] * len(EDGES)`);
    - len(OLD_EDGES): counts of the old slots, each spread evenly over the new slots it covers
      (the old figures interpolated so), lowest and highest the slot's edges; the old open slot
      (7 days and more) counts at 7 days, the least its records waited;
    - anything else is no histogram of ours: it starts over, empty, rather than stop the KPIs."""
    if len(hist) == 3 * _K:
        return hist
    fresh = [0.0] * _K * 3
    if len(hist) == len(OLD_EDGES) and len(hist) != _K:
        for i, n in enumerate(hist):
            if n > 0:
                left = OLD_EDGES[i]
                right = OLD_EDGES[i + 1] if i + 1 < len(OLD_EDGES) else left
                add_delays(fresh, left, right, n)
    return fresh


def add_delays(hist: list[float], lo: float, hi: float, n: float) -> None:
    """Add `n` records whose delays spread evenly over [lo, hi] to `hist`, turned into the layout
    of `delay_hist` first if it is in another."""
    if len(hist) != 3 * _K:
        hist[:] = delay_hist(hist)
    lo, hi = max(0.0, lo), max(0.0, hi)
    if hi < lo:
        lo, hi = hi, lo
    if n <= 0:
        return
    first = bisect.bisect_right(EDGES, lo) - 1
    if hi <= lo:
        _count(hist, first, n, lo, lo)
        return
    width = hi - lo
    for i in range(first, _K):
        left = EDGES[i]
        if left >= hi:
            break
        right = EDGES[i + 1] if i + 1 < _K else math.inf
        a, b = max(lo, left), min(hi, right)
        if b > a:
            _count(hist, i, n * (b - a) / width, a, b)


def _count(hist: list[float], i: int, n: float, low: float, high: float) -> None:
    if hist[i] <= 0:
        hist[_K + i], hist[2 * _K + i] = low, high
    else:
        hist[_K + i] = min(hist[_K + i], low)
        hist[2 * _K + i] = max(hist[2 * _K + i], high)
    hist[i] += n


def hist_count(hist: list[float]) -> float:
    """The records a delay histogram counts."""
    return sum(delay_hist(hist)[:_K])


def hist_quantile(hist: list[float], q: float) -> float | None:
    """The delay below which a share `q` of the records counted in `hist` waited, interpolated
    evenly between the lowest and the highest delay counted in its slot (so never beyond a delay
    counted: the open last slot reports at most its highest). For records added one by one it is
    off from the exact quantile by at most the spread of the delays its slot counted: 0.25 s
    below 1 s, a factor of 1.5 from 1 s to 30 days (docs/kpi.md)."""
    hist = delay_hist(hist)
    total = sum(hist[:_K])
    if total <= 0:
        return None
    want = q * total
    seen = 0.0
    last = None
    for i in range(_K):
        n = hist[i]
        if n <= 0:
            continue
        low, high = hist[_K + i], hist[2 * _K + i]
        if seen + n >= want:
            return round(low + (high - low) * max(0.0, want - seen) / n, 3)
        seen += n
        last = high
    return None if last is None else round(last, 3)  # q * total past the sum by rounding


def _share(num: float, den: float) -> float | None:
    return round(num / den, 6) if den > 0 else None


def point_completeness(plan: PointPlan, slot: list[Any] | None, span: float) -> float | None:
    """One point's completeness over the seconds `span` its device was observed."""
    if plan.method is None or span <= 0:
        return None
    good, _total, missing, good_s = slot or (0, 0, 0.0, 0.0)
    if plan.method == "count":
        assert plan.poll
        expected = span / plan.poll
        return round(min(1.0, good / expected), 6) if expected > 0 else None
    if plan.method == "report_every":
        return round(max(0.0, 1.0 - missing / span), 6)
    return round(min(1.0, good_s / span), 6)


def nearest_rank(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 3)


def alert_figures(rows: Iterable[Mapping[str, Any]], cfg: KpiConfig, now: float) -> dict[str, Any]:
    """Alerts fired on the day: count by severity, time to acknowledge and to clear (mean, p90),
    and those not acknowledged within their severity's target (`ack_within`)."""
    by_sev: dict[str, int] = {}
    to_ack: list[float] = []
    to_clear: list[float] = []
    late: dict[str, int] = {}
    open_ = 0
    for r in rows:
        sev = r["severity"]
        by_sev[sev] = by_sev.get(sev, 0) + 1
        target = cfg.ack_within.get(sev)
        if r["ack_ts"] is not None:
            waited = max(0.0, r["ack_ts"] - r["fired_ts"])
            to_ack.append(waited)
            if target is not None and waited > target:
                late[sev] = late.get(sev, 0) + 1
        elif target is not None and now - r["fired_ts"] > target:
            late[sev] = late.get(sev, 0) + 1
        else:
            open_ += 1
        if r["cleared_ts"] is not None:
            to_clear.append(max(0.0, r["cleared_ts"] - r["fired_ts"]))
    return {
        "count": sum(by_sev.values()),
        "by_severity": dict(sorted(by_sev.items())),
        "acknowledged": len(to_ack),
        "ack_mean_s": round(sum(to_ack) / len(to_ack), 3) if to_ack else None,
        "ack_p90_s": nearest_rank(to_ack, 0.9),
        "cleared": len(to_clear),
        "clear_mean_s": round(sum(to_clear) / len(to_clear), 3) if to_clear else None,
        "clear_p90_s": nearest_rank(to_clear, 0.9),
        "not_acked_within_target": dict(sorted(late.items())),
        "awaiting_ack": open_,
    }


def day_figures(
    day: str,
    acc: Mapping[str, Any],
    plans: Mapping[str, PointPlan],
    cfg: KpiConfig,
    alerts: Iterable[Mapping[str, Any]],
    cursors: Mapping[str, tuple[str, int, float]],
    now: float,
    closed: bool,
    device: str | None = None,
) -> dict[str, Any]:
    """Everything docs/kpi.md lists for one day, per device and for the site."""
    by_device: dict[str, list[PointPlan]] = {}
    for p in plans.values():
        by_device.setdefault(p.device, []).append(p)
    devices = []
    site_up = site_span = 0.0
    all_points: list[float] = []
    below: list[dict[str, Any]] = []
    counted = 0  # devices of the site file observed on the day (not those removed since)
    for dev in sorted(set(acc["dev"]) | set(by_device)):
        if dev not in by_device:
            continue
        times = acc["dev"].get(dev)
        if times is None:
            continue
        counted += 1
        span = times["up"] + times["down"]
        points: dict[str, dict[str, Any]] = {}
        comps: list[float] = []
        for plan in sorted(by_device[dev], key=lambda p: p.id):
            c = point_completeness(plan, acc["pts"].get(plan.id), span)
            points[plan.id] = {"method": plan.method, "completeness": c}
            if c is not None:
                comps.append(c)
        all_points.extend(comps)
        avail = _share(times["up"], span)
        completeness = round(sum(comps) / len(comps), 6) if comps else None
        t_avail, t_comp = cfg.targets_for(dev)
        entry = {
            "id": dev,
            "observed_s": round(span, 3),
            "online_s": round(times["up"], 3),
            "availability": avail,
            "completeness": completeness,
            "targets": {"availability": t_avail, "completeness": t_comp},
            "points": points,
        }
        misses = [
            {"device": dev, "figure": name, "value": value, "target": target}
            for name, value, target in (
                ("availability", avail, t_avail),
                ("completeness", completeness, t_comp),
            )
            if value is not None and value < target
        ]
        entry["below_target"] = [m["figure"] for m in misses]
        below.extend(misses)
        site_up += times["up"]
        site_span += span
        if device is None or dev == device:
            devices.append(entry)
    gw = acc["gw"]
    gw_span = gw["up"] + gw["down"]
    delivery = {}
    first, last = acc["rec"][1], acc["rec"][2]
    for name, info in sorted(acc.get("dl", {}).items()):
        kind, seq = info["kind"], info["seq"]
        if name in cursors:
            kind, seq = cursors[name][0], cursors[name][1]
        share = None
        if first is not None and last is not None:
            share = round(min(1.0, max(0.0, (seq - first + 1) / (last - first + 1))), 6)
        delivery[name] = {
            "kind": kind,
            "delivered_share": share,
            "delay_p50_s": hist_quantile(info["hist"], 0.5),
            "delay_p95_s": hist_quantile(info["hist"], 0.95),
            "acknowledged": round(hist_count(info["hist"])),
        }
    return {
        "day": day,
        "closed": closed,
        # seconds of the day a forward step of the wall clock skipped: counted nowhere
        "clock_gap_s": round(acc.get("clock_gap_s", 0.0), 3),
        "site": {
            "availability": _share(site_up, site_span),
            "completeness": round(sum(all_points) / len(all_points), 6) if all_points else None,
            "devices": counted,
            "below_target": len(below),
        },
        "gateway": {
            "observed_s": round(gw_span, 3),
            "down_s": round(gw["down"], 3),
            "availability": _share(gw["up"], gw_span),
            "starts": gw["starts"],
            "stops": gw["stops"],
        },
        "records": acc["rec"][0],
        "alerts": alert_figures(alerts, cfg, now),
        "rule_actions": {"executed": acc["act"][0], "failed": acc["act"][1]},
        "delivery": delivery,
        "devices": devices,
        "below_target": below,
    }


CSV_COLUMNS = (
    "day",
    "device",
    "availability",
    "completeness",
    "availability_target",
    "completeness_target",
    "observed_s",
    "online_s",
    "below_target",
)


def to_csv(days: Iterable[Mapping[str, Any]]) -> str:
    """One row per day and device, then one per day for the site (device `*`)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for d in days:
        for dev in d["devices"]:
            w.writerow(
                [
                    d["day"],
                    dev["id"],
                    _cell(dev["availability"]),
                    _cell(dev["completeness"]),
                    dev["targets"]["availability"],
                    dev["targets"]["completeness"],
                    dev["observed_s"],
                    dev["online_s"],
                    " ".join(dev["below_target"]),
                ]
            )
        site = d["site"]
        w.writerow(
            [d["day"], "*", _cell(site["availability"]), _cell(site["completeness"]), "", "", "", "", ""]
        )
    return out.getvalue()


def _cell(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"
