"""`edge status`: ask the running gateway of a site file how it is, for a person or a playbook.

It asks the gateway's own HTTP API on the address of the site file's `web.listen` (the loopback
address when it listens on every address): `/healthz` (public), then `/api/v1/status` with a
read-scope token from `--token-file`, `EDGE_TOKEN_FILE` or `EDGE_TOKEN`. Without a token it says
what `/healthz` says and no more. It never opens the journal or the state database: a status
read must not compete with the gateway for them, and what a rollout's health gate needs (every
driver's first start attempt made, no crash loop) is known to the running process alone.

A gateway that does not answer is told apart from one that runs without answering by the state
its journal writer publishes beside the journal (`edge.store.space`), read-only.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.cli import Subcommands, add_command, arg

if TYPE_CHECKING:
    from edge.config import Site

#: exit codes (docs/operations.md)
HEALTHY = 0
UNHEALTHY = 1  # it runs, but is not ready, a device has not started, a driver crash-loops...
BAD_INPUT = 2  # usage, a site file that does not validate, an unreadable token file
NOT_RUNNING = 3  # nothing answers and no journal writer runs
UNREADABLE = 4  # it runs but its status cannot be read (token refused, web server off, no answer)

TIMEOUT_S = 5.0


@dataclass
class Target:
    url: str
    context: ssl.SSLContext | None


def target_of(site: Site) -> Target:
    """The base URL of the site's web server as seen from this host."""
    host, _, port = site.web.listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    if site.web.tls_cert:
        # the gateway's own certificate is the authority; the name in it is the box's, not loopback's
        context = ssl.create_default_context(cafile=site.web.tls_cert)
        context.check_hostname = False
        return Target(f"https://{shown}:{port}", context)
    return Target(f"http://{shown}:{port}", None)


def read_token(path: str | None) -> str | None:
    """The token from `path`, EDGE_TOKEN_FILE or EDGE_TOKEN (first line, stripped); OSError when
    a file named cannot be read."""
    path = path or os.environ.get("EDGE_TOKEN_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.readline().strip()
        except UnicodeDecodeError:
            raise OSError(f"{path}: not a text file (one line: a token from `edge tokens create`)") from None
        if not token:
            raise OSError(f"{path}: the file is empty (one line: a token from `edge tokens create`)")
        return token
    return os.environ.get("EDGE_TOKEN") or None


class NoAnswer(Exception):
    """Nothing answers on the address (refused, timed out, unreachable)."""


def _get(target: Target, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(target.url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S, context=target.context) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"null")
        except ValueError:
            body = None
        return exc.code, body
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise NoAnswer(str(getattr(exc, "reason", exc))) from None
    except ValueError as exc:  # not JSON: something else listens there
        raise NoAnswer(f"the answer is not JSON ({exc}): is another program on this port?") from None


def gather(site: Site, token: str | None) -> tuple[int, dict[str, Any]]:
    """The exit code and the report (`--json` prints it as it is)."""
    from edge import __version__
    from edge.store import space

    # the shape of /api/v1/status's `site`, from the site file until the gateway's own is read
    mine = {"id": site.site.id, "name": site.site.name, "timezone": site.site.timezone}
    report: dict[str, Any] = {"site": mine, "cli_version": __version__, "running": False}
    writer = space.read_status(site.storage.path)
    report["writer_pid"] = writer.get("pid") if writer else None
    if not site.web.enabled:
        report["running"] = writer is not None
        report["problem"] = "the site's web server is off (web.enabled: false): its status cannot be read"
        return (UNREADABLE if writer else NOT_RUNNING), report
    target = target_of(site)
    report["url"] = target.url
    try:
        code, health = _get(target, "/healthz", None)
    except NoAnswer as exc:
        report["running"] = writer is not None
        if writer:
            report["problem"] = (
                f"the journal writer runs (pid {writer.get('pid')}) but nothing answers on "
                f"{target.url}: {exc} (starting, stopping, or web.listen changed since it started)"
            )
            return UNREADABLE, report
        report["problem"] = f"not running: nothing answers on {target.url} ({exc})"
        return NOT_RUNNING, report
    report["running"] = True
    report["healthz"] = health
    if not isinstance(health, dict) or health.get("site") != site.site.id:
        other = health.get("site") if isinstance(health, dict) else None
        report["problem"] = f"{target.url} answers for site {other!r}, not {site.site.id!r}"
        return UNREADABLE, report
    if token is None:
        report["detail"] = False
        # failing retention degrades /healthz but, as in /api/v1/status, not the verdict: records
        # are still journaled (the warning is printed)
        retention_only = (
            health.get("status") == "degraded"
            and health.get("reason") is not None
            and (health.get("reason") == health.get("retention_failing"))
        )
        report["healthy"] = code == 200 and (health.get("status") == "ok" or retention_only)
        report["note"] = "no token: only /healthz was read (--token-file FILE with a read-scope token)"
        return (HEALTHY if report["healthy"] else UNHEALTHY), report
    code, status = _get(target, "/api/v1/status", token)
    if code != 200 or not isinstance(status, dict):
        why = status.get("detail") if isinstance(status, dict) else None
        report["problem"] = f"/api/v1/status answered {code}: {why or status}"
        if code in (401, 403):
            report["problem"] += " (the token is unknown, revoked or lacks the read scope)"
        return UNREADABLE, report
    report["detail"] = True
    report.update(status)
    return (HEALTHY if status.get("healthy") else UNHEALTHY), report


def _size(n: Any) -> str:
    if not isinstance(n, int | float):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "?"


def _duration(s: Any) -> str:
    if not isinstance(s, int | float):
        return "-"
    s = int(s)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d}d {h}h" if d else f"{h}h {m}m" if h else f"{m}m {s % 60}s"


def human(code: int, r: dict[str, Any]) -> str:
    site = r["site"]  # {id, name, timezone}
    site = f"{site.get('id')} ({site.get('name')})" if site.get("name") else site.get("id")
    if code == NOT_RUNNING:
        return f"{site}: NOT RUNNING\n  {r['problem']}"
    if "problem" in r:
        return f"{site}: running, status unreadable\n  {r['problem']}"
    verdict = "healthy" if code == HEALTHY else "UNHEALTHY"
    if not r.get("detail"):
        h = r.get("healthz") or {}
        head = f"{site}: {verdict} (/healthz: {h.get('status')}, journal seq {h.get('committed_seq')})"
        warning = (
            f"\n  WARNING retention failing: {h['retention_failing']}" if h.get("retention_failing") else ""
        )
        return f"{head}{warning}\n  {r['note']}"
    lines = [f"{site}: {verdict}  (version {r.get('version')}, up {_duration(r.get('uptime_s'))})"]
    lines.append(f"  config hash {r.get('config_hash')}   rules hash {r.get('rules_hash')}")
    if r.get("restart_pending"):  # a reload found changes only a restart applies
        lines.append("  ! restart needed for " + ", ".join(map(str, r["restart_pending"])))
    why = []
    if not r.get("ready"):
        why.append("not ready (starting or stopping)")
    if not r.get("devices_started"):
        why.append("a device has not made its first start attempt")
    if r.get("crash_looping"):
        why.append("crash looping: " + ", ".join(r["crash_looping"]))
    if r.get("journal_failing"):
        why.append("the journal cannot write")
    for w in why:
        lines.append(f"  ! {w}")
    devices = r.get("devices") or {}
    lines.append(
        "  devices: " + (", ".join(f"{n} {state}" for state, n in sorted(devices.items())) or "none")
    )
    clock = r.get("clock") or {}
    lines.append(
        "  clock: "
        + ("trusted" if clock.get("trusted") else "NOT TRUSTED")
        + (f" ({clock.get('reason')})" if clock.get("reason") else "")
    )
    b = r.get("buffer") or {}
    cap = f" of {_size(b.get('max_bytes'))}" if b.get("max_bytes") else ""
    lines.append(
        f"  journal: seq {b.get('last_seq')}, {_size(b.get('bytes'))}{cap}, "
        f"{b.get('ingest_rate')} records/s, full in {_duration(b.get('time_until_full_s'))}"
        + (", DISK FULL" if b.get("disk_full") else "")
    )
    if b.get("retention_paused"):
        lines.append(f"  WARNING retention paused: {b['retention_paused']}")
    if b.get("retention_failing"):
        lines.append(f"  WARNING retention failing: {b['retention_failing']}")
    for name, cur in sorted((b.get("cursors") or {}).items()):
        lines.append(
            f"    {cur.get('kind')} {name}: backlog {cur.get('backlog')}, "
            f"oldest unsent {_duration(cur.get('oldest_unsent_age_s'))}"
        )
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from edge.cli import load_or_report, os_error

    site = load_or_report(args.config)
    if site is None:
        return BAD_INPUT
    try:
        token = read_token(args.token_file)
    except OSError as exc:
        print(f"error: cannot read the token: {os_error(exc)}", file=sys.stderr)
        return BAD_INPUT
    code, report = gather(site, token)
    report["exit_code"] = code
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        print(human(code, report))
    return code


def register(sub: Subcommands) -> None:
    add_command(
        sub,
        "status",
        help="how the running gateway is: health, version and hashes, devices, clock, journal",
        description="Ask the running gateway of the site file (its HTTP API on web.listen) how it is:\n"
        "ready, every device's first start attempt made, drivers crash looping, the journal, the\n"
        "clock's trust, the version and the config and rules hashes. A read-scope token\n"
        "(`edge tokens create -c SITE.yaml status`) from --token-file, EDGE_TOKEN_FILE or\n"
        "EDGE_TOKEN is needed for more than /healthz.\n\n"
        "exit codes: 0 healthy, 1 running but unhealthy, 2 bad usage, site file or token file,\n"
        "3 not running, 4 running but its status cannot be read",
        epilog="example:\n  edge status -c /etc/community-edge/site.yaml --token-file /etc/community-edge/status.token --json",
        func=cmd_status,
        config=True,
        args=[
            arg("--json", action="store_true", help="print the report as JSON"),
            arg("--token-file", metavar="FILE", help="a file holding a read-scope API token"),
        ],
    )
