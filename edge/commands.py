"""Core commands: `edge run`, `edge check`, `edge buffer stats|tail`."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import re
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from edge import fmt
from edge.cli import Command, add_command, add_command_group, arg, int_range, load_or_report, log_level_arg
from edge.config import Site
from edge.units import format_size
from edge.yamlpos import Path as YamlPath
from edge.yamlpos import Positions

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
            "as needing a restart; a file `edge check` refuses is refused and nothing changes.\n"
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
            "Every number must be finite; every file it names (tokens, keys, certificates) must be\n"
            "readable, and a secret one non-empty and readable by its owner only (0600).\n"
            "Prints every problem as FILE:LINE: KEY: MESSAGE on stderr, then their count, and exits 1;\n"
            "exits 0 when valid.\n"
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
        "resume-retention",
        help="end a retention pause kept since a clock jump (gateway stopped)",
        description=(
            "After the wall clock jumped forward, the journal deletes nothing by age until the clock\n"
            "is trusted again, and the pause outlives a restart: it ends by itself when the kernel\n"
            "clock is synchronised (NTP), or when the wall clock is set back behind the jump. On a box\n"
            "that never synchronises, whose clock is right now (check `date`), this ends it: the next\n"
            "start deletes by age again, by the clock it has then. Stop the gateway first; the command\n"
            "is refused while it runs, and is written to the audit log."
        ),
        func=cmd_buffer_resume_retention,
        config=True,
        args=[],
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
            arg("-n", type=int_range(1, 100_000), default=20, help="how many records (1 to 100,000)"),
            arg("--json", action="store_true", help="JSON lines instead of a table"),
            arg("-f", "--follow", action="store_true", help="keep printing new records (Ctrl-C stops)"),
        ],
    )


# ---------------------------------------------------------------- helpers
#: config keys that name a file the gateway reads, beside every key ending in `_file`
FILE_KEYS = frozenset({"tls_cert", "tls_key", "client_cert", "client_key"})
#: words in such a key that make the file a secret: only its owner may read it (0600 or stricter)
SECRET_WORDS = ("token", "password", "secret", "key")
#: a key path at the start of a check's line (`privacy.master_key_file: …`), to be located
_KEY_PATH = re.compile(r"[a-z_][a-z0-9_]*(?:\[\d+\]|\.[a-z0-9_][a-z0-9_-]*)*")


def site_problems(site: Site) -> list[str]:
    """What `edge check` finds beyond the schema, one FILE:LINE: KEY: MESSAGE line each: the
    plugins' checks (a rule pack that does not compile, a master key that cannot be read) and
    every file the site names read as the gateway will read it (`file_problems`). The SIGHUP
    reload of `edge run` refuses a file with any of them, as `edge check` does."""
    from edge.plugins import registry

    lines = [line for p in registry().with_hook("check") if p.check for line in p.check(site)]
    found = file_problems(site) + _claimed_elsewhere(site)
    if not lines and not found:
        return []
    pos = _positions(site.source)
    out = [_located(line, pos) for line in lines]
    out += [str(pos.problem(path, message)) for path, message in found]
    return out


def site_warnings(site: Site) -> list[str]:
    """The plugins' warnings about the site, located as `site_problems` locates its lines."""
    from edge.plugins import registry

    lines = [line for p in registry().with_hook("warnings") if p.warnings for line in p.warnings(site)]
    if not lines:
        return []
    pos = _positions(site.source)
    return [_located(line, pos) for line in lines]


def _claimed_elsewhere(site: Site) -> list[tuple[YamlPath, str]]:
    """A state DB beside the journal that records another journal as its own (two sites sharing a
    folder): `edge run` refuses it, so `edge check` (the unit's ExecStartPre) says so first."""
    from edge.state import claim_problem

    problem = claim_problem(site.storage.resolved_state_path(), site.storage.path)
    return [(("storage",), problem)] if problem else []


def file_problems(site: Site) -> list[tuple[YamlPath, str]]:
    """(key path, problem) for every file the site names that the gateway could not use as `edge
    run` would: one that is missing or cannot be read, a secret (a token, password, key: the key
    name says so) that others may read or that is empty, a recipient's pseudonym key too short,
    and web TLS that is half given or whose certificate and key do not load together. What is
    disabled (`enabled: false`) is not read by the gateway, nor here. The privacy master key is
    read by its plugin's check, as its component reads it."""
    return _references(site)[0]


def env_warnings(site: Site) -> list[str]:
    """A secret given by an environment variable (`token_env`, `password_env`, `key_env`…) that is
    not set where `edge check` runs: not a problem (the service's environment may set it: systemd
    `Environment=` or `EnvironmentFile=`), but `edge run` fails without it, so it is said."""
    unset = [(path, name) for path, name in _references(site)[1] if name not in os.environ]
    if not unset:
        return []
    pos = _positions(site.source)
    return [
        str(
            pos.problem(
                path,
                f"environment variable {name} is not set here: the gateway needs it in its own "
                "environment (systemd: Environment= or EnvironmentFile= in its unit), or it will not start",
            )
        )
        for path, name in unset
    ]


def _references(site: Site) -> tuple[list[tuple[YamlPath, str]], list[tuple[YamlPath, str]]]:
    """`file_problems`, and the (key path, variable name) of every `*_env` setting of what is
    enabled."""
    from edge.privacy.keyfile import KeyFileError
    from edge.privacy.pseudonym import PseudonymiseConfig, load_pseudonym_key

    out: list[tuple[YamlPath, str]] = []
    env: list[tuple[YamlPath, str]] = []

    def walk(value: Any, path: YamlPath, owner: str) -> None:
        if isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, (*path, i), owner)
        elif isinstance(value, dict):
            for k, item in value.items():
                walk(item, (*path, str(k)), owner)
        elif isinstance(value, PseudonymiseConfig):
            try:
                load_pseudonym_key(value.key_file, value.key_env, f"{owner} pseudonymise")
            except KeyFileError as exc:
                key = "key_file" if value.key_file else "key_env"
                out.extend(((*path, key), str(p)) for p in exc.problems)
        elif isinstance(value, BaseModel) and getattr(value, "enabled", True) is not False:
            if len(path) == 2 and path[0] in ("upstream", "consumers", "devices"):
                owner = (
                    f"{'device' if path[0] == 'devices' else path[0].rstrip('s')} {getattr(value, 'id', '')}"
                )
            for name in type(value).model_fields:
                item = getattr(value, name)
                if isinstance(item, str) and item and (name.endswith("_file") or name in FILE_KEYS):
                    if path == ("privacy",) and name == "master_key_file":
                        continue
                    problem = file_problem(item, any(w in name for w in SECRET_WORDS))
                    if problem:
                        out.append(((*path, name), problem))
                elif isinstance(item, str) and item and name.endswith("_env"):
                    env.append(((*path, name), item))
                else:
                    walk(item, (*path, name), owner)

    walk(site.web, ("web",), "web")
    walk(site.upstream, ("upstream",), "")
    walk(site.consumers, ("consumers",), "")
    walk(site.devices, ("devices",), "")
    for key, section in sorted(site.sections.items()):
        walk(section, (key,), key)
    out += _web_tls_problems(site, {path for path, _ in out})
    return out, env


def file_problem(name: str, secret: bool) -> str | None:
    """Why the gateway could not read `name` as it reads a file of the site (None when it can):
    missing or unreadable, not a regular file, and for a secret also readable by others than its
    owner and group or empty (an empty token file lets nobody in, without an error)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return f"{name}: cannot read {'secret ' if secret else ''}file: {exc.strerror or exc}"
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return f"{name}: not a regular file"
        if not secret:
            return None
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o007:  # group-readable is how a root-owned file reaches the service's group
            return (
                f"{name}: secret file has mode {mode:04o}: every user of the box can read it; "
                f"make it readable by the gateway's user only (chmod 600 {name}; 640 with the "
                "gateway's group)"
            )
        try:
            empty = not f.read(64 * 1024).strip()
        except OSError as exc:
            return f"{name}: cannot read secret file: {exc.strerror or exc}"
        return f"{name}: secret file is empty" if empty else None


def _web_tls_problems(site: Site, seen: set[YamlPath]) -> list[tuple[YamlPath, str]]:
    """HTTPS needs both web.tls_cert and web.tls_key (with one of them the web UI would serve plain
    HTTP), and the two must load together, as the web server loads them at start."""
    web = site.web
    if not web.enabled or not (web.tls_cert or web.tls_key):
        return []
    if not (web.tls_cert and web.tls_key):
        given, missing = ("tls_cert", "tls_key") if web.tls_cert else ("tls_key", "tls_cert")
        return [(("web", given), f"web.{given} needs web.{missing}: with one of them HTTPS is not served")]
    if {("web", "tls_cert"), ("web", "tls_key")} & seen:
        return []  # already reported: missing, unreadable or readable by others
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(web.tls_cert, web.tls_key)
    except (ssl.SSLError, OSError) as exc:
        return [
            (
                ("web", "tls_cert"),
                f"{web.tls_cert} with {web.tls_key}: the web server cannot load this certificate "
                f"and key: {getattr(exc, 'reason', None) or exc}",
            )
        ]
    return []


def _positions(source: str) -> Positions:
    """The line of every key of the site file, to locate a problem found after it was loaded; no
    lines (the file alone) when it cannot be read again."""
    from edge.yamlpos import YamlError, load, read_text

    try:
        return load(read_text(source), source)[1]
    except (OSError, UnicodeDecodeError, YamlError):
        return Positions(source)


def _located(line: str, pos: Positions) -> str:
    """A check's line that starts with a key of the site file (`privacy.master_key_file: …`, or
    the file's name and the key: `site.yaml: kpi.devices.x: …`) with the file and the line of
    that key before it; any other line as it is."""
    text = line[len(pos.file) + 2 :] if line.startswith(f"{pos.file}: ") else line
    head, sep, rest = text.partition(": ")
    if not sep or not _KEY_PATH.fullmatch(head):
        return line
    path = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", head))
    if path not in pos.lines:  # not a key of this file (`site.yaml: …` is a file's name)
        return line
    return str(pos.problem(path, rest))


def report_problems(config: str, problems: list[str]) -> None:
    """Each problem on stderr, then their count, as for a file that does not validate."""
    for line in problems:
        print(line, file=sys.stderr)
    print(f"{config}: {fmt.count(len(problems), 'problem')}", file=sys.stderr)


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
    # allowed, but should be decided on purpose
    for warning in site.warnings + site_warnings(site) + env_warnings(site):
        print(warning, file=sys.stderr)
    problems = site_problems(site)
    if not problems and Path(site.storage.path).exists():
        from edge.store.journal import Journal, JournalUnreadable

        try:
            Journal.open_readonly(site.storage.path).close_sync()
        except JournalUnreadable as exc:
            problems = [str(_positions(site.source).problem(("storage", "path"), str(exc)))]
    if problems:
        report_problems(args.config, problems)
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
    for warning in site.warnings:  # what `edge check` warns of, in the service's log too
        logging.getLogger("edge.config").warning("%s", warning)
    # a SIGHUP reload refuses what `edge check` refuses
    return asyncio.run(serve(args.config, site, check=site_problems))


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


def cmd_buffer_resume_retention(args: argparse.Namespace) -> int:
    from edge import audit
    from edge.runtime import SiteLock, StartError
    from edge.state import StateDB, StateDBError
    from edge.store.journal import Journal

    site = load_or_report(args.config)
    if site is None:
        return 1
    path = site.storage.path
    if not Path(path).exists():
        print(f"{path}: no journal yet (has the site run?)", file=sys.stderr)
        return 1
    lock = SiteLock(path)
    try:
        lock.acquire()  # the gateway keeps its pause in memory too: it must be stopped
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        reason = Journal.end_kept_pause(path)
        if reason is None:
            print("no retention pause is kept: nothing to do")
            return 0
        try:
            state = StateDB(site.storage.resolved_state_path(), journal=path)
        except StateDBError as exc:
            print(f"error: the pause ended, but the audit log could not be written: {exc}", file=sys.stderr)
            return 1
        try:
            audit.record(state, "cli", "retention_resume", path, reason=reason)
        finally:
            state.close()
    finally:
        lock.release()
    print(f"retention resumed (it was paused: {reason}); the next start deletes by age by its clock")
    return 0


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
        "dropped_unwritable",
        "ints_as_floats",
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
    if h.get("retention_failing"):
        lines.append(f"WARNING         retention failing: {h['retention_failing']}")
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
        records = journal.tail(args.n)
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
