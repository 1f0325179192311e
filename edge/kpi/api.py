"""`GET /api/v1/kpi`: the daily figures of a range of days (JSON for a page, CSV for a sheet).

The JSON holds what a KPI page draws: per day the site's figures, the per-device table (each
device with its points and the figures below target), the availability matrix device x day for
a calendar, and "today so far" (folded up to the request)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.api.auth import require
from edge.api.keys import get_runtime
from edge.api.problem import Problem, json_response
from edge.kpi.days import parse_day

# The route is there on every site; the fold's code (component, engine, figures and csv) is
# imported by a request on a site that computes KPIs, and a site without them never loads it.
if TYPE_CHECKING:
    from edge.kpi.component import KpiComponent
    from edge.runtime import Runtime

MAX_DAYS = 400
DEFAULT_DAYS = 7


def _component(request: web.Request) -> KpiComponent:
    if not getattr(get_runtime(request).site.sections.get("kpi"), "enabled", False):
        comp = None
    else:
        from edge.kpi.component import KpiComponent

        comp = get_runtime(request).component(KpiComponent)
    if comp is None:
        raise Problem(404, "KPIs are off", "this site computes no KPIs: add a kpi: section to the site file")
    return comp


def _day_param(request: web.Request, name: str, default: str) -> str:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    try:
        return parse_day(str(raw))
    except ValueError as exc:
        raise Problem(400, f"Bad query parameter {name}", str(exc)) from None


def report(comp: KpiComponent, first: str, last: str, device: str | None) -> dict[str, Any]:
    """The figures of every day from `first` to `last` (both included, local days)."""
    from edge.kpi.engine import new_day

    now = comp.ctx.clock()
    today = comp.cal.day_of(now)
    stored = {d: (data, closed) for d, data, closed in comp.store.days_between(first, last)}
    days = []
    d = dt.date.fromisoformat(first)
    while d.isoformat() <= last:
        key = d.isoformat()
        d += dt.timedelta(days=1)
        if key == today:
            # the running fold's, or what it stored (`edge kpi show` reads the files: no fold)
            acc = comp.fold.days.get(key) or (stored[key][0] if key in stored else None) or new_day()
            closed = False
        elif key in stored:
            acc, closed = stored[key]
            acc = comp.fold.days.get(key, acc)
        else:
            continue
        days.append(comp.figures(key, acc, closed=closed, now=now, device=device))
    ids = sorted({dev["id"] for day in days for dev in day["devices"]})
    matrix = {
        i: [next((x["availability"] for x in day["devices"] if x["id"] == i), None) for day in days]
        for i in ids
    }
    return {
        "timezone": comp.cal.name,
        "from": first,
        "to": last,
        "today": today,
        "days": days,
        "availability_matrix": {"days": [day["day"] for day in days], "devices": matrix},
    }


async def kpi(request: web.Request) -> web.StreamResponse:
    require(request, "read")
    comp = _component(request)
    today = comp.cal.day_of(comp.ctx.clock())
    default_from = (dt.date.fromisoformat(today) - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat()
    first = _day_param(request, "from", default_from)
    last = _day_param(request, "to", today)
    if first > last:
        raise Problem(400, "Bad day range", f"from ({first}) is after to ({last})")
    span = (dt.date.fromisoformat(last) - dt.date.fromisoformat(first)).days + 1
    if span > MAX_DAYS:
        raise Problem(400, "Day range too long", f"from..to covers {span} days; at most {MAX_DAYS}")
    device = request.query.get("device") or None
    if device is not None and device not in {p.device for p in comp.plans.values()}:
        known = ", ".join(sorted({p.device for p in comp.plans.values()})) or "none"
        raise Problem(400, "Unknown device", f"no device {device!r} with KPIs on this site; known: {known}")
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise Problem(400, "Bad query parameter format", "format is json or csv")
    if today >= first and today <= last:
        await comp.step()  # today so far: everything committed until now
    async with comp.lock:  # a fold step in its thread must not change the days being read
        out = await asyncio.to_thread(report, comp, first, last, device)
    if fmt == "csv":
        from edge.kpi.figures import to_csv

        return web.Response(
            text=to_csv(out["days"]),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="kpi-{first}-{last}.csv"'},
        )
    return json_response(out)


ROUTES = [web.get("/api/v1/kpi", kpi)]


def setup(app: web.Application, runtime: Runtime) -> None:
    app.router.add_routes(ROUTES)
