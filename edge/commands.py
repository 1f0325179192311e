"""Core commands: `edge run`, `edge check`, `edge demo`, `edge buffer stats|tail`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.cli import add_command, add_command_group, arg, log_level_arg
from edge.config import ConfigError, Site, load_site
from edge.units import format_duration, format_size

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
    add_command(
        sub,
        "demo",
        help="run a simulated community site with its web UI",
        description=(
            "Run a simulated community site: electricity and water meters, parking gates with loop\n"
            "sensors, waste bins, a health kiosk and an environment sensor that drops out now and then.\n"
            "Two devices are real Modbus TCP devices simulated in the demo process on 127.0.0.1:15020\n"
            "(a free port if that one is taken) and read by the modbus driver: meter-main (CHINT\n"
            "DTSU666, unit 1) and gate-south (parking barrier, unit 2). cam-parking is a camera\n"
            "reading a video the demo draws into DATA_DIR (OpenCV, no camera needed).\n"
            "The site file is written to DATA_DIR/site.yaml (kept across runs, so edits survive); point\n"
            "the other commands at it, e.g. `edge buffer stats -c DATA_DIR/site.yaml`."
        ),
        func=cmd_demo,
        args=[
            arg("--data-dir", default="demo-data", help="where the journal, state and site file live"),
            arg("--host", default="127.0.0.1", help="address of the web UI (0.0.0.0 for the site LAN)"),
            arg("--port", type=int, default=8080, help="port of the web UI"),
            log_level_arg(),
        ],
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
def load_or_report(path: str) -> Site | None:
    try:
        return load_site(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = len(exc.problems)
        print(f"{path}: {n} problem{'s' if n != 1 else ''}", file=sys.stderr)
        return None


def open_reader(config: str) -> tuple[Site, Any] | None:
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
    if not check_rule_packs(site):
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
            f"{args.config}: ok — site {site.site.id}, {len(site.devices)} devices, {points} points, "
            f"{len(site.upstream)} upstream sinks, {len(site.consumers)} pull consumers"
        )
    return 0


def check_rule_packs(site: Site) -> bool:
    """Compile the rule packs the site names (rules.packs); print every problem on stderr."""
    rules = site.sections.get("rules")
    packs: list[str] = list(getattr(rules, "packs", []) or [])
    if not packs:
        return True
    from edge.yamlpos import YamlError, read_text
    from rules.config import resolve_pack
    from rules.model import RulePackError, compile_pack

    allow = list(getattr(rules, "webhook_allow", None) or [])
    ok = True
    for i, pack in enumerate(packs):
        path = resolve_pack(pack, site.source)
        try:
            compile_pack(read_text(path), str(path), webhook_allow=allow)
        except YamlError as exc:  # larger than the cap: refused before it is read whole
            print(exc, file=sys.stderr)
            ok = False
        except UnicodeDecodeError as exc:
            print(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}", file=sys.stderr)
            ok = False
        except OSError as exc:
            print(
                f"{site.source}: rules.packs[{i}]: cannot read rule pack {pack!r}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            ok = False
        except RulePackError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            ok = False
    return ok


def cmd_run(args: argparse.Namespace) -> int:
    from edge.logs import setup_logging
    from edge.service import serve

    site = load_or_report(args.config)
    if site is None:
        return 1
    setup_logging(args.log_level)
    return asyncio.run(serve(args.config, site))


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import prepare
    from edge.logs import setup_logging

    data_dir = Path(args.data_dir)
    path = prepare(data_dir, args.host, args.port)
    setup_logging(args.log_level)
    return asyncio.run(_demo(args, data_dir, path))


async def _demo(args: argparse.Namespace, data_dir: Path, path: Path) -> int:
    """Start the simulated Modbus field devices, then serve the site; stop them afterwards."""
    import logging

    from edge.demo import SIM_HOST, move_simulator_port, ready_cameras, simulator_port
    from edge.service import serve

    log = logging.getLogger("edge.demo")
    path = ready_cameras(path, log)  # without OpenCV: a copy of the site file without cameras
    simulator: Any = None
    wanted = simulator_port(path)
    if wanted is None:
        log.info("site file %s has no simulated Modbus devices (delete it to get them)", path)
    else:
        from drivers.modbus.simulator import FieldDeviceSimulator

        simulator = FieldDeviceSimulator(SIM_HOST, wanted)
        try:
            await simulator.start()
        except OSError as exc:
            simulator = FieldDeviceSimulator(SIM_HOST, 0)
            got = await simulator.start()
            move_simulator_port(path, wanted, got)
            log.warning("Modbus simulator: port %d unavailable (%s); serving on %d instead", wanted, exc, got)
        log.info(
            "Modbus simulator on %s:%d (unit 1: CHINT DTSU666 meter, unit 2: parking barrier)",
            SIM_HOST,
            simulator.port,
        )
    try:
        site = load_or_report(str(path))
        if site is None:
            return 1
        site.web = site.web.model_copy(update={"listen": f"{args.host}:{args.port}"})
        token_file = data_dir / "city-platform.token"
        # a log is copied into tickets and chats: it names the token and where it is, not all of it
        shown = token_prefix(token_file.read_text().strip())

        def announce(rt: Any) -> None:
            url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{rt.web_port}/"
            log.info(
                "demo site running: open %s (site file %s; pull API token for consumer city-platform: "
                "%s, the whole token is in %s)",
                url,
                path,
                shown,
                token_file,
            )

        return await serve(str(path), site, on_ready=announce)
    finally:
        if simulator is not None:
            await simulator.stop()


def token_prefix(token: str, shown: int = 4) -> str:
    """Enough of a token to tell it apart (the demo's fixed "demo-" prefix not counted), no more."""
    head = "demo-" if token.startswith("demo-") else ""
    return token[: len(head) + shown] + "…"


def cmd_buffer_stats(args: argparse.Namespace) -> int:
    from edge.store.health import buffer_health

    opened = open_reader(args.config)
    if opened is None:
        return 1
    site, journal = opened
    try:
        health = buffer_health(journal, site.storage)
        health["devices"] = recent_flow(journal, [d.id for d in site.devices])
    finally:
        journal.close_sync()
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
        lines.append(f"ingest rate     {h['ingest_rate']:.1f} records/s")
    if h.get("time_until_full_s") is not None:
        lines.append(f"time until full {format_duration(round(h['time_until_full_s']))}")
    for key in ("dropped_oldest", "dropped_newest", "dropped_overflow", "history_trimmed", "write_errors"):
        if h.get(key):
            lines.append(f"{key.replace('_', ' '):<15} {h[key]:,}")
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
            age = (
                f"oldest unsent {format_duration(max(0, round(now - oldest)))} ago"
                if oldest
                else "up to date"
            )
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
                f"{d['recent_readings']:,} readings, newest {age:.1f}s ago"
                if age is not None
                else "no readings"
            )
            lines.append(f"  {name:<16} {flow}")
    return "\n".join(lines)


def cmd_buffer_tail(args: argparse.Namespace) -> int:
    opened = open_reader(args.config)
    if opened is None:
        return 1
    _site, journal = opened
    try:
        records = journal.tail(max(0, args.n))
        last = records[-1]["seq"] if records else 0
        for rec in records:
            print(format_record(rec, args.json), flush=True)
        while args.follow:
            time.sleep(0.5)
            for rec in journal.read(last, 1000):
                print(format_record(rec, args.json), flush=True)
                last = rec["seq"]
    except KeyboardInterrupt:
        pass
    finally:
        journal.close_sync()
    return 0


def format_record(rec: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(rec, ensure_ascii=False)
    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec["ts"]))
    if rec["type"] == "reading":
        return f"{rec['seq']:>10}  {ts}  {rec['point']:<32} {rec['value']!s:<14} {rec['quality']}"
    payload = json.dumps(rec["payload"], ensure_ascii=False)
    return f"{rec['seq']:>10}  {ts}  [{rec['severity']}] {rec['kind']} from {rec['source']}: {payload}"
