"""`edge sync status -c site.yaml [--json]`: where every sink and consumer stands.

Reads the journal and the state DB directly (read-only), so it works whether or not the gateway
is running; last success/error come from the snapshot the running sinks persist about once a second.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from edge import fmt
from edge.cli import Subcommands, add_command, add_command_group, arg
from edge.paths import sqlite_uri


def register(subparsers: Subcommands) -> None:
    sub = add_command_group(
        subparsers,
        "sync",
        help="upstream sync: status of push sinks and pull consumers",
        description="Upstream sync: push sinks (upstream:) and pull consumers (consumers:).",
        dest="sync_command",
        metavar="SUBCOMMAND",
        required=False,
    )
    add_command(
        sub,
        "status",
        help="cursor, backlog, oldest unsent age, last success/error and dead letters per sink/consumer",
        description=(
            "Print, per push sink and pull consumer: cursor, backlog rows, oldest unsent age, last\n"
            "success and error (as of the running gateway's last snapshot) and dead letters.\n"
            "Exit status 0, or 1 when the site file or its database cannot be read."
        ),
        func=status_command,
        config=True,
        args=[arg("--json", action="store_true", help="print one JSON object instead of a table")],
    )


#: the saved status every sink writes (`PushSink.snapshot`); other keys are its kind's own
BASE_SNAPSHOT_KEYS = {"last_success", "last_error", "last_error_at", "dead_letters", "instance"}
#: the keys `collect` gives every sink row
ROW_KEYS = {"id", "type", "enabled", "cursor", "backlog_rows", "oldest_unsent_age_s", *BASE_SNAPSHOT_KEYS}


def collect(site: Any) -> dict[str, Any]:
    """The status of every sink and consumer of `site`, from its files on disk."""
    import sqlite3
    from pathlib import Path

    import orjson

    from edge.state import StateDBError, claim_problem
    from edge.store.journal import Journal

    path = site.storage.path
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no journal yet (has the gateway ever run?)")
    journal = Journal.open_readonly(path)
    try:
        committed_seq = journal.committed_seq
        cursors = journal.cursors()

        def oldest(seq: int) -> float:
            ts = journal.oldest_after(seq)
            return round(max(0.0, time.time() - ts), 3) if ts is not None else 0.0

        snapshots: dict[str, dict[str, Any]] = {}
        dead: dict[str, int] = {}
        state_path = site.storage.resolved_state_path()
        problem = claim_problem(state_path, path)
        if problem:  # another site's dead letters and sink status: not this one's
            raise StateDBError(problem)
        if Path(state_path).exists():
            sconn = sqlite3.connect(sqlite_uri(state_path), uri=True, timeout=10)
            try:
                has = sconn.execute("SELECT 1 FROM sqlite_master WHERE name='sync_status'").fetchone()
                if has:
                    snapshots = {
                        r[0]: orjson.loads(r[1])
                        for r in sconn.execute("SELECT sink, status FROM sync_status")
                    }
                    dead = dict(
                        sconn.execute(
                            "SELECT sink, count(*) FROM sync_dead_letters WHERE retried IS NULL GROUP BY sink"
                        ).fetchall()
                    )
            finally:
                sconn.close()
        sinks = []
        for cfg in site.upstream:
            seq = cursors.get(cfg.id, ("sink", 0, 0.0))[1]
            snap = snapshots.get(cfg.id, {})
            sinks.append(
                {
                    "id": cfg.id,
                    "type": cfg.type,
                    "enabled": cfg.enabled,
                    "cursor": seq,
                    "backlog_rows": journal.unsent(seq, committed_seq)[0],
                    "oldest_unsent_age_s": oldest(seq) if committed_seq > seq else 0.0,
                    "last_success": snap.get("last_success"),
                    "last_error": snap.get("last_error", ""),
                    "dead_letters": dead.get(cfg.id, 0),
                    # what a kind of sink adds to its saved status (an MQTT sink: its link)
                    **{k: v for k, v in snap.items() if k not in BASE_SNAPSHOT_KEYS},
                }
            )
        consumers = []
        for c in site.consumers:
            _kind, seq, updated = cursors.get(c.id, ("consumer", 0, 0.0))
            consumers.append(
                {
                    "id": c.id,
                    "cursor": seq,
                    "backlog_rows": journal.unsent(seq, committed_seq)[0],
                    "oldest_unsent_age_s": oldest(seq) if committed_seq > seq else 0.0,
                    "last_ack": updated if seq > 0 else None,
                }
            )
        return {"committed_seq": committed_seq, "sinks": sinks, "consumers": consumers}
    finally:
        journal.close_sync()


def _when(ts: float | None, tz: str | None) -> str:
    return fmt.timestamp(ts, tz) if ts else "never"


def _shown(key: str, value: Any, tz: str | None) -> str:
    if key.startswith("last_") and isinstance(value, int | float) and not isinstance(value, bool):
        return _when(value, tz)
    return "yes" if value is True else "no" if value is False else str(value)


def status_command(args: argparse.Namespace) -> int:
    import sqlite3

    import orjson

    from edge.config import ConfigError, load_site
    from edge.state import StateDBError

    try:
        site = load_site(args.config)
        data = collect(site)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (FileNotFoundError, sqlite3.Error, StateDBError) as exc:
        print(f"edge sync status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    tz = site.site.timezone
    print(f"last committed seq: {data['committed_seq']}")
    if not data["sinks"] and not data["consumers"]:
        print("no upstream sinks and no pull consumers are configured")
    for s in data["sinks"]:
        print(
            f"sink {s['id']} ({s['type']}{'' if s['enabled'] else ', disabled'}): cursor {s['cursor']}, "
            f"backlog {fmt.count(s['backlog_rows'], 'row')}, "
            f"oldest unsent {fmt.duration(s['oldest_unsent_age_s'])}, "
            f"last success {_when(s['last_success'], tz)}, dead letters {s['dead_letters']}"
        )
        if s["last_error"]:
            print(f"    last error: {s['last_error']}")
        own = {k: v for k, v in s.items() if k not in ROW_KEYS}
        if own:
            print("    " + ", ".join(f"{k.replace('_', ' ')} {_shown(k, v, tz)}" for k, v in own.items()))
    for c in data["consumers"]:
        print(
            f"consumer {c['id']}: cursor {c['cursor']}, backlog {fmt.count(c['backlog_rows'], 'row')}, "
            f"oldest unacked {fmt.duration(c['oldest_unsent_age_s'])}, last ack {_when(c['last_ack'], tz)}"
        )
    return 0
