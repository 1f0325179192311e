"""A dry run in a process of its own: `python -m rules.dry_run_worker`, started by
`RulesComponent.dry_run`.

A dry run evaluates a rule someone is still writing over up to a month of journal records; in the
gateway's process even a thread running it would hold the interpreter lock while the event loop
waits. Here it cannot: the child opens the journal's SQLite file read-only, runs
`rules.replay.dry_run` on it, and answers with one JSON document on stdout. It caps itself before
doing anything else: address space (RLIMIT_AS, twice the resident memory the parent allows, which
it watches), CPU seconds (RLIMIT_CPU) and an alarm for the wall clock, so it ends on its own even if
the gateway that started it is gone. Where a limit cannot be set (a seccomp filter refusing
prlimit64; the shipped unit allows it) it is skipped with a line on stderr; the parent's watch of
resident memory and wall clock still holds.

Request (stdin, JSON): {"journal": path, "rule": rule document, "timezone": name or null,
"since": ts, "until": ts, "max_rows": n, "memory_bytes": n, "seconds": n}.
Answer (stdout, JSON): {"result": {firings, evaluated, prefill}} or {"error": text, "limit": name}.
"""

from __future__ import annotations

import resource
import signal
import sys
from typing import Any

import orjson

MAX_REQUEST = 4 * 1024 * 1024  # bytes of the request: a rule document and a few numbers


def _cap(memory_bytes: int, seconds: float) -> None:
    cpu = int(seconds) + 1
    for limit, value in ((resource.RLIMIT_AS, 2 * memory_bytes), (resource.RLIMIT_CPU, cpu)):
        try:
            resource.setrlimit(limit, (value, value + (limit == resource.RLIMIT_CPU)))
        except (OSError, ValueError) as exc:
            print(f"dry run: limit {limit} not set: {exc}", file=sys.stderr)
    # the wall clock, for a child left behind: SIGALRM's default action ends the process
    signal.alarm(int(seconds) + 2)


def run(request: dict[str, Any]) -> dict[str, Any]:
    """The dry run a request asks for (in this process; `main` caps the process first)."""
    from edge.store.journal import Journal
    from rules.cron import site_tz
    from rules.expr import LimitExceeded
    from rules.model import RuleErrors, parse_rule
    from rules.replay import dry_run

    try:
        compiled = parse_rule(request["rule"])
    except RuleErrors as exc:
        return {"error": str(exc), "limit": ""}
    journal = Journal.open_readonly(request["journal"])
    try:
        result = dry_run(
            journal,
            compiled,
            site_tz(request.get("timezone")),
            float(request["since"]),
            float(request["until"]),
            int(request["max_rows"]),
        )
    except LimitExceeded as exc:  # a message template over its size limit
        return {"error": str(exc), "limit": exc.limit}
    finally:
        journal.close_sync()
    return {"result": result}


def main() -> int:
    request = orjson.loads(sys.stdin.buffer.read(MAX_REQUEST))
    memory = int(request["memory_bytes"])
    _cap(memory, float(request["seconds"]))
    try:
        answer = run(request)
    except MemoryError:
        answer = {"error": f"the dry run needed more than {memory // 2**20} MiB of memory", "limit": "memory"}
    sys.stdout.buffer.write(orjson.dumps(answer, default=str, option=orjson.OPT_NON_STR_KEYS))
    sys.stdout.buffer.flush()
    return 0 if "result" in answer else 1


if __name__ == "__main__":
    sys.exit(main())
