"""`edge kpi show|rebuild|export`: the stored operator KPIs on the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from edge.cli import Subcommands, add_command, add_command_group, arg


def register(sub: Subcommands) -> None:
    ks = add_command_group(
        sub,
        "kpi",
        help="operator KPIs per day: show, export, rebuild",
        description="Daily availability, completeness, delivery, alert response and rule actions (docs/kpi.md).",
        dest="kpi_command",
        required=False,
    )
    days = [
        arg("--from", dest="first", metavar="YYYY-MM-DD", help="first day (default: 6 days before today)"),
        arg("--to", dest="last", metavar="YYYY-MM-DD", help="last day (default: today)"),
        arg("--device", metavar="ID", help="only this device in the per-device figures"),
    ]
    add_command(
        ks,
        "show",
        help="print the daily figures",
        description="Print the stored figures per day (site, gateway, alerts, devices below target).",
        func=cmd_show,
        config=True,
        args=[*days, arg("--json", action="store_true", help="the API's JSON instead of a table")],
    )
    add_command(
        ks,
        "export",
        help="write the daily figures as CSV",
        description="One CSV row per day and device, then one per day for the site (device *).",
        func=cmd_export,
        config=True,
        args=[*days, arg("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")],
    )
    add_command(
        ks,
        "rebuild",
        help="recompute a past day from the journal",
        description="Fold one past day again from the journal (while the journal still holds all of it)\n"
        "and replace its stored figures. Delivery figures are kept: they come from the cursors live.",
        func=cmd_rebuild,
        config=True,
        args=[arg("--day", required=True, metavar="YYYY-MM-DD", help="the local day to rebuild")],
    )


def _range(args: argparse.Namespace, today: str) -> tuple[str, str]:
    from edge.kpi.days import parse_day

    last = parse_day(args.last) if args.last else today
    first = (
        parse_day(args.first)
        if args.first
        else (dt.date.fromisoformat(last) - dt.timedelta(days=6)).isoformat()
    )
    if first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    return first, last


def _report(args: argparse.Namespace) -> dict | None:  # type: ignore[type-arg]
    import time

    from edge.cli import load_or_report
    from edge.kpi.api import report
    from edge.kpi.offline import OfflineKpi

    site = load_or_report(args.config)
    if site is None:
        return None
    kpi = OfflineKpi(site)
    try:
        first, last = _range(args, kpi.cal.day_of(time.time()))
        if args.device and args.device not in {p.device for p in kpi.plans.values()}:
            raise ValueError(f"--device {args.device!r}: no such device with KPIs in {args.config}")
        return report(kpi, first, last, args.device)  # type: ignore[arg-type]
    finally:
        kpi.close()


def _report_or_problem(args: argparse.Namespace) -> dict | None:  # type: ignore[type-arg]
    """The report, or None after saying on stderr what is wrong with the site file or the days."""
    try:
        return _report(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_show(args: argparse.Namespace) -> int:
    out = _report_or_problem(args)
    if out is None:
        return 2
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(
        f"{'day':<11} {'avail':>8} {'complete':>8} {'gw down':>9} {'alerts':>6} {'ack mean':>9}  below target"
    )
    for d in out["days"]:
        s, a = d["site"], d["alerts"]
        below = ", ".join(f"{b['device']}:{b['figure']}" for b in d["below_target"]) or "-"
        print(
            f"{d['day']:<11} {_pct(s['availability']):>8} {_pct(s['completeness']):>8} "
            f"{d['gateway']['down_s']:>8.0f}s {a['count']:>6} {_secs(a['ack_mean_s']):>9}  {below}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edge.kpi.figures import to_csv

    if args.output:  # before anything is read or folded
        from edge.backup import refuse_own_file
        from edge.cli import load_or_report

        site = load_or_report(args.config)
        if site is None:
            return 2
        refused = refuse_own_file(site, args.output)
        if refused:
            print(refused, file=sys.stderr)
            return 1
    out = _report_or_problem(args)
    if out is None:
        return 2
    text = to_csv(out["days"])
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from edge.cli import load_or_report
    from edge.kpi.days import parse_day
    from edge.kpi.offline import OfflineKpi, RebuildError

    try:
        day = parse_day(args.day)
    except ValueError as exc:
        print(f"error: --day: {exc}", file=sys.stderr)
        return 2
    site = load_or_report(args.config)
    if site is None:
        return 2
    kpi = OfflineKpi(site)
    try:
        figures = kpi.rebuild(day)
    except RebuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        kpi.close()
    s = figures["site"]
    print(f"{day}: rebuilt; availability {_pct(s['availability'])}, completeness {_pct(s['completeness'])}")
    return 0


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}s"
