"""Core commands: `edge run`, `edge check`, `edge buffer stats|tail`."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import fmt
from edge.cli import Command, add_command, add_command_group, arg, load_or_report, log_level_arg
from edge.config import Site
from edge.units import format_size

if TYPE_CHECKING:
    from edge.store.journal import Journal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_command(
        sub,
        "run",
        help="run a site (the systemd service runs this)",
        description=(
            "Run the site described by SITE.yaml until SIGTERM/SIGINT.\n"
            "SIGTERM flushes the journal and exits within a few seconds. SIGHUP re-reads the file:\n"
            "device changes apply live; changes to storage, web, upstream or consumers are reported\n"
            "as needing a restart; a file with errors is refused and nothing changes.\n"
            "Files, directories and databases it creates are private to its user (0600/0700), and\n"
            "older ones in the storage directory are made so at start.\n"
            "Logs go to stdout as logfmt lines. Under systemd (Type=notify) it sends READY=1,\n"
            "STATUS=… and, when WatchdogSec= is set, WATCHDOG=1 from the event loop."
        ),
        func=cmd_run,
        config=True,
        args=[log_level_arg()],
    )
    add_command(
        sub,
        "check",
        help="validate a site file without starting anything",
        description=(
            "Validate SITE.yaml (and the profiles and rule packs it names) without starting anything.\n"
            "Prints every problem as FILE:LINE: KEY: MESSAGE on stderr and exits 1; exits 0 when valid.\n"
            "Each of these files may be at most 1 MiB and nest at most 64 levels deep."
        ),
        func=cmd_check,
        config=True,
        args=[arg("-q", "--quiet", action="store_true", help="print nothing when the file is valid")],
    )
    bsub = add_command_group(
        sub,
        "buffer",
        help="inspect the journal (store-and-forward buffer)",
        description="Inspect the journal of a site: its health, and its newest records.",
        dest="buffer_command",
        metavar="SUBCOMMAND",
    )
    add_command(
        bsub,
        "stats",
        help="rows, bytes, backlog per consumer, ingest rate, time until full",
        description=(
            "Buffer health: rows and bytes held, the byte cap and full policy, per sink/consumer cursor\n"
            "the backlog and the age of the oldest unsent record, the current ingest rate, the\n"
            "estimated time until full, and drop counters. Works while `edge run` is running."
        ),
        func=cmd_buffer_stats,
        config=True,
        args=[arg("--json", action="store_true", help="print one JSON object")],
    )
    add_command(
        bsub,
        "tail",
        help="print the newest records",
        description=(
            "Print the newest N records of the journal, oldest first. With --json, one JSON object per\n"
            "line in the shape the pull API serves:\n"
            '  {"seq", "ts", "type": "reading", "point", "value", "quality"}\n'
            '  {"seq", "ts", "type": "event", "kind", "source", "severity", "payload"}\n'
            "(ts in UTC epoch seconds). `edge rules test --input` reads this format."
        ),
        func=cmd_buffer_tail,
        config=True,
        args=[
            arg("-n", type=int, default=20, help="how many records"),
            arg("--json", action="store_true", help="JSON lines instead of a table"),
            arg("-f", "--follow", action="store_true", help="keep printing new records (Ctrl-C stops)"),
        ],
    )


# ---------------------------------------------------------------- helpers
def pseudonym_key_problems(site: Site) -> list[str]:
    """Each recipient's pseudonym key read as `edge run` will read it (a missing file, one others
    may read, or a key too short would otherwise stop the gateway's start, not this check)."""
    from edge.privacy.keyfile import KeyFileError
    from edge.privacy.pseudonym import load_pseudonym_key

    out: list[str] = []
    recipients: list[tuple[str, object]] = [(f"upstream {s.id}", s) for s in site.upstream]
    recipients += [(f"consumer {c.id}", c) for c in site.consumers]
    for what, recipient in recipients:
        cfg = getattr(recipient, "pseudonymise", None)
        if cfg is None:
            continue
        try:
            load_pseudonym_key(cfg.key_file, cfg.key_env, f"{what} pseudonymise")
        except KeyFileError as exc:
            out.extend(str(p) for p in exc.problems)
    return out


def open_reader(config: str) -> tuple[Site, Journal] | None:
    """The site and a read-only journal for a tool; None (with the reason on stderr) otherwise."""
    from edge.store.journal import Journal, JournalUnreadable

    site = load_or_report(config)
    if site is None:
        return None
    db = Path(site.storage.path)
    if not db.exists():
        print(f"{db}: no journal yet (has the site run?)", file=sys.stderr)
        return None
    try:
        return site, Journal.open_readonly(str(db))
    except JournalUnreadable as exc:
        print(exc, file=sys.stderr)
        return None


# ---------------------------------------------------------------- commands
def cmd_check(args: argparse.Namespace) -> int:
    site = load_or_report(args.config)
    if site is None:
        return 1
    from edge.plugins import registry

    for warning in site.warnings:  # allowed, but someone should have decided it on purpose
        print(warning, file=sys.stderr)
    problems = [line for p in registry().with_hook("check") if p.check for line in p.check(site)]
    problems += pseudonym_key_problems(site)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    if Path(site.storage.path).exists():
        from edge.store.journal import Journal, JournalUnreadable

        try:
            Journal.open_readonly(site.storage.path).close_sync()
        except JournalUnreadable as exc:
            print(f"{args.config}: storage.path: {exc}", file=sys.stderr)
            return 1
    if not args.quiet:
        points = sum(len(d.point_infos()) for d in site.devices)
        print(
            f"{args.config}: ok — site {site.site.id}, {fmt.count(len(site.devices), 'device')}, "
            f"{fmt.count(points, 'point')}, {fmt.count(len(site.upstream), 'upstream sink')}, "
            f"{fmt.count(len(site.consumers), 'pull consumer')}"
        )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge.logs import setup_logging
    from edge.service import serve

    site = load_or_report(args.config)
    if site is None:
        return 1
    setup_logging(args.log_level)
    return asyncio.run(serve(args.config, site))


def token_prefix(token: str, shown: int = 4) -> str:
    """Enough of a token to tell it apart (the demo's fixed "demo-" prefix not counted), no more."""
    head = "demo-" if token.startswith("demo-") else ""
    return token[: len(head) + shown] + "…"


def on_journal(command: Callable[[argparse.Namespace, Site, Journal], int]) -> Command:
    """`command` run with the site of `-c` and its journal opened read-only, closed after it;
    exit status 1 (the reason on stderr) when either cannot be read."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        opened = open_reader(args.config)
        if opened is None:
            return 1
        site, journal = opened
        try:
            return command(args, site, journal)
        finally:
            journal.close_sync()

    return run


@on_journal
def cmd_buffer_stats(args: argparse.Namespace, site: Site, journal: Journal) -> int:
    from edge.store.health import buffer_health

    health = buffer_health(journal, site.storage)
    health["devices"] = recent_flow(journal, [d.id for d in site.devices])
    if args.json:
        print(json.dumps(health, ensure_ascii=False, default=str))
        return 0
    print(format_health(health))
    return 0


def recent_flow(journal: Journal, device_ids: list[str], window: int = 20000) -> dict[str, dict[str, Any]]:
    """Per device, over the newest `window` records: readings seen and the age of the newest one.

    Bounded on purpose: a 4 GiB journal must not be scanned to answer "is data flowing?".
    """
    seen = journal.device_counts(max(0, journal.committed_seq - window))
    now = time.time()
    out = {}
    for device_id in device_ids:
        count, last = seen.get(device_id, (0, None))
        out[device_id] = {
            "recent_readings": count,
            "last_reading_age_s": round(now - last, 1) if last else None,
        }
    return out


def format_health(h: dict[str, Any]) -> str:
    now = time.time()
    lines = [
        f"rows            {h.get('rows', 0):,}  (seq {h.get('first_seq')} … {h.get('last_seq')})",
        f"bytes           {format_size(h.get('bytes', 0))} of {format_size(h.get('max_bytes', 0))} "
        f"(when full: {h.get('when_full')})",
    ]
    if "ingest_rate" in h:
        lines.append(f"ingest rate     {fmt.number(float(h['ingest_rate']), 1)} records/s")
    if h.get("time_until_full_s") is not None:
        lines.append(f"time until full {fmt.duration(h['time_until_full_s'])}")
    counters = (
        "dropped_oldest",
        "dropped_newest",
        "dropped_overflow",
        "history_trimmed",
        "retention_expired",
        "snapshots_expired",
        "write_errors",
    )
    for key in counters:
        if h.get(key):
            lines.append(f"{key.replace('_', ' '):<15} {h[key]:,}")
    if h.get("retention_paused"):
        lines.append(f"WARNING         retention paused: {h['retention_paused']}")
    if h.get("failing") or h.get("disk_full") or h.get("disk_low") or h.get("recovering"):
        if h.get("recovering"):
            state = "recovering from a full disk"
        elif h.get("disk_full"):
            state = "disk full"
        else:
            state = "disk space low" if h.get("disk_low") else "writes failing"
        lines.append(f"WARNING         {state}: {h.get('last_error') or 'see the log'}")
    if h.get("backlog_rows"):
        lines.append(f"backlog         {h['backlog_rows']:,} records waiting in memory for space")
    if h.get("free_bytes") is not None:
        reserve = format_size(h["disk_reserve"]) if h.get("disk_reserve") is not None else "none"
        lines.append(f"disk free       {format_size(h['free_bytes'])} (journal reserve {reserve})")
    cursors = h.get("cursors") or {}
    if cursors:
        lines.append("cursors:")
        for name, c in cursors.items():
            oldest = c.get("oldest_unsent_ts")
            age = f"oldest unsent {fmt.ago(max(0.0, now - oldest))}" if oldest else "up to date"
            lines.append(
                f"  {name:<16} {c.get('kind', ''):<9} seq {c.get('seq')}  backlog {c.get('backlog', 0):,}  {age}"
            )
    else:
        lines.append("cursors:        none (no upstream sinks or pull consumers have registered)")
    devices = h.get("devices") or {}
    if devices:
        lines.append("devices (newest records):")
        for name, d in devices.items():
            age = d["last_reading_age_s"]
            flow = (
                f"{fmt.count(d['recent_readings'], 'reading')}, newest {fmt.ago(age)}"
                if age is not None
                else "no readings"
            )
            lines.append(f"  {name:<16} {flow}")
    return "\n".join(lines)


@on_journal
def cmd_buffer_tail(args: argparse.Namespace, site: Site, journal: Journal) -> int:
    shown = RecordFormat(site)
    try:
        records = journal.tail(max(0, args.n))
        last = records[-1]["seq"] if records else 0
        for rec in records:
            print(format_record(rec, args.json, shown), flush=True)
        while args.follow:
            time.sleep(0.5)
            for rec in journal.read(last, 1000):
                print(format_record(rec, args.json, shown), flush=True)
                last = rec["seq"]
    except KeyboardInterrupt:
        pass
    return 0


class RecordFormat:
    """What a record is shown with: the site's time zone (the gateway's host may run in another,
    or in UTC) and each point's declared precision."""

    def __init__(self, site: Site | None = None) -> None:
        self.tz = fmt.zone(site.site.timezone if site is not None else None)
        self.precision: dict[str, int | None] = {}
        for device in site.devices if site is not None else []:
            for info in device.point_infos():
                self.precision[info.id] = getattr(info, "precision", None)


def format_record(rec: dict[str, Any], as_json: bool, shown: RecordFormat | None = None) -> str:
    if as_json:
        return json.dumps(rec, ensure_ascii=False)
    shown = shown or RecordFormat()
    ts = fmt.timestamp(rec["ts"], shown.tz)
    if rec["type"] == "reading":
        value = fmt.number(rec["value"], shown.precision.get(rec["point"]))
        return f"{rec['seq']:>10}  {ts}  {rec['point']:<32} {value:<14} {rec['quality']}"
    payload = json.dumps(rec["payload"], ensure_ascii=False)
    return f"{rec['seq']:>10}  {ts}  [{rec['severity']}] {rec['kind']} from {rec['source']}: {payload}"
