"""The figures of one day from its accumulators (docs/kpi.md defines each), and their CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from typing import Any

from edge.kpi.config import KpiConfig
from edge.kpi.engine import PointPlan

# delay buckets (seconds) of the delivery histogram: reading time -> acknowledged upstream
EDGES = (0.0, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 604800)


def add_delays(hist: list[float], lo: float, hi: float, n: int) -> None:
    """Add `n` records whose delays spread evenly over [lo, hi] to `hist` (len(EDGES) slots:
    slot i holds [EDGES[i], EDGES[i+1]), the last one everything above)."""
    lo, hi = max(0.0, lo), max(0.0, hi)
    if hi < lo:
        lo, hi = hi, lo
    width = hi - lo
    for i, left in enumerate(EDGES):
        right = EDGES[i + 1] if i + 1 < len(EDGES) else math.inf
        if width <= 0:
            if left <= lo < right:
                hist[i] += n
                return
            continue
        overlap = min(hi, right) - max(lo, left)
        if overlap > 0:
            hist[i] += n * overlap / width


def hist_quantile(hist: list[float], q: float) -> float | None:
    total = sum(hist)
    if total <= 0:
        return None
    want = q * total
    seen = 0.0
    for i, n in enumerate(hist):
        if n <= 0:
            continue
        if seen + n >= want:
            left = EDGES[i]
            right = EDGES[i + 1] if i + 1 < len(EDGES) else left * 2
            return round(left + (right - left) * (want - seen) / n, 3)
        seen += n
    return float(EDGES[-1])


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
            "acknowledged": round(sum(info["hist"])),
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
