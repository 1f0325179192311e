"""A dry run in a process of its own: both ends. `run_in_child` (the gateway's side, used by
`RulesComponent.dry_run`) starts `python -m rules.dry_run_worker`, watches and reaps it; `main` is
the child.

A dry run evaluates a rule someone is still writing over up to a month of journal records; in the
gateway's process even a thread running it would hold the interpreter lock while the event loop
waits. Here it cannot: the child opens the journal's SQLite file read-only, runs
`rules.replay.dry_run` on it, and answers with one JSON document on stdout. It caps itself before
doing anything else: address space (RLIMIT_AS, twice the resident memory the parent allows, which
it watches), CPU seconds (RLIMIT_CPU) and an alarm for the wall clock, so it ends on its own even if
the gateway that started it is gone. Where a limit cannot be set (a seccomp filter refusing
prlimit64; the shipped unit allows it) it is skipped with a line on stderr; the parent's watch of
resident memory and wall clock still holds.

The gateway kills the child past its wall-clock budget or once its resident memory passes the
budget (read from /proc every MEMORY_POLL_S), and reaps it on every path: answer, budget, error,
cancellation (a request or the gateway stopping).

The child holds no key. Where the site seals personal and sensitive records at rest it reads them
as stored (`rules.replay.StoredJournal`) and asks the gateway to open those its rule reads, a page
at a time: the gateway opens them where it opens every journal row it reads
(`edge.store.rows.open_rows`, with the site's sealer), so the rule sees the records the live
engine saw, the master key and the data keys never leave the gateway's process, a subject
forgotten meanwhile reads as erased, and the child keeps one page at a time.

Messages are JSON documents of one line each (JSON text holds no raw newline).
Request (stdin): {"journal": path, "rule": rule document, "timezone": name or null,
"since": ts, "until": ts, "max_rows": n, "point_classes": {point: class}, "memory_bytes": n,
"seconds": n}.
To open (stdout): {"open": [[column, ts, point or source, envelope in base64], ...]}; the reply
(stdin): {"opened": [cell, ...]}, each as a reader with the keys fetches it (a value; a payload's
JSON text), or as one without them (null; `{"sealed":true}`) where it does not open. A child with
nobody to ask (its stdin closed) takes every sealed record as sealed.
Answer (stdout): {"result": {firings, firings_total, truncated, evaluated, inputs, inputs_named,
prefill}} or {"error": text, "limit": name}. `firings` holds the first MAX_FIRINGS firings,
`firings_total` how many there were and `truncated` whether some were left out: the child keeps
the rest to itself, so the gateway never reads, judges or sends an answer of hundreds of thousands
of firings (a rule that fires on every reading of a fast point, over hours). The gateway parses
the answer, and opens what the child asks, in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

MAX_REQUEST = 4 * 1024 * 1024  # bytes of the request: a rule document and a few numbers
MAX_FIRINGS = 1000  # firings a dry run answers with (the first ones; their total is counted)
MEMORY_POLL_S = 0.1  # how often the gateway reads a running child's resident memory
# bytes of one line from the child: its answer (MAX_FIRINGS messages of up to 10,000 characters),
# or a page of envelopes to open
MAX_LINE = 64 * 2**20
STDERR_TAIL = 64 * 1024  # bytes of the child's stderr kept, for the error of a child that failed
OPEN = b'{"open":'  # how a request to open starts (the child writes that key first and alone)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # where `rules` is importable from


class OverBudget(Exception):
    """The dry run passed a budget ("time", "memory") or one of the expression limits; `limit`
    names which."""

    def __init__(self, limit: str, message: str) -> None:
        self.limit = limit
        super().__init__(message)


class ChildFailed(Exception):
    """The child ended without an answer (killed from outside, a crash)."""


# ---------------------------------------------------------------- the gateway's side
async def run_in_child(
    request: dict[str, Any], seconds: float, memory: int, running: set[asyncio.subprocess.Process]
) -> dict[str, Any]:
    """The dry run's result, computed by a child process given `request` (see the module
    docstring) and at most `seconds` of wall clock and `memory` resident bytes. The process is in
    `running` while it runs. Raises OverBudget (a budget or an expression limit) or ChildFailed."""
    path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rules.dry_run_worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path},
        limit=MAX_LINE,
    )
    running.add(proc)
    watch = asyncio.create_task(_watch_memory(proc, memory))
    err = bytearray()
    errors = asyncio.create_task(_keep_tail(proc, err))
    try:
        async with asyncio.timeout(seconds):
            out = await _converse(
                proc,
                orjson.dumps({**request, "memory_bytes": memory, "seconds": seconds}),
                request["journal"],
            )
    except TimeoutError:
        raise OverBudget("time", f"the dry run did not finish within {seconds:g} s and was stopped") from None
    finally:
        watch.cancel()
        over_memory = (await asyncio.gather(watch, return_exceptions=True))[0] is True
        await end(proc)
        running.discard(proc)
        # the rest of its stderr, which an ended process has closed
        await asyncio.wait({errors}, timeout=1.0)
        errors.cancel()
        await asyncio.gather(errors, return_exceptions=True)
    if over_memory:
        raise OverBudget("memory", _memory_message(memory))
    # up to MAX_FIRINGS firings of up to 10,000 characters of message each: not on the loop
    return await asyncio.to_thread(_answer, out, bytes(err), proc.returncode)


async def _converse(proc: asyncio.subprocess.Process, request: bytes, journal: str) -> bytes:
    """Send the child `request`, open what it asks to open of `journal` (in a thread, with the
    sealer this process registered for it), and give back its answer line (empty: it ended
    without one)."""
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(request + b"\n")
        await proc.stdin.drain()
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:  # a line over MAX_LINE
                raise ChildFailed(f"the dry run's process sent more than {MAX_LINE} bytes at once") from None
            if not line.startswith(OPEN) or not line.endswith(b"\n"):
                return line
            proc.stdin.write(await asyncio.to_thread(_open_cells, journal, line))
            await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):  # it ended: its status says how
        return b""


def _open_cells(journal: str, line: bytes) -> bytes:
    """The reply to the child's request to open sealed cells of `journal` (see the module
    docstring): each opened as every read of the journal in this process opens it."""
    from edge.store.rows import open_rows

    try:
        asked = orjson.loads(line)["open"]
        opened: list[Any] = [None] * len(asked)
        for column in ("value", "payload"):
            at = [i for i, cell in enumerate(asked) if cell[0] == column]
            if not at:
                continue
            rows = [(float(asked[i][1]), str(asked[i][2]), base64.b64decode(asked[i][3])) for i in at]
            for i, row in zip(at, open_rows(journal, (("ts",), ("point",), (column,)), rows), strict=True):
                opened[i] = row[2]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError, binascii.Error):
        raise ChildFailed(
            "the dry run's process asked to open something that is not a journal cell"
        ) from None
    return orjson.dumps({"opened": opened}) + b"\n"


async def _keep_tail(proc: asyncio.subprocess.Process, tail: bytearray) -> None:
    """Read the child's stderr to its end, keeping its last STDERR_TAIL bytes in `tail` (a child
    that writes more than a pipe holds would otherwise wait on it)."""
    assert proc.stderr is not None
    while chunk := await proc.stderr.read(65536):
        tail += chunk
        del tail[:-STDERR_TAIL]


async def end(proc: asyncio.subprocess.Process) -> None:
    """Kill (if still running) and reap a child, even when the caller is being cancelled."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await asyncio.shield(proc.wait())


async def _watch_memory(proc: asyncio.subprocess.Process, limit: int) -> bool:
    """Kill `proc` once its resident memory passes `limit`; True if it did. The child caps its own
    address space too (at twice this), but only if the system let it, and a mapping that never
    becomes resident should not end a dry run."""
    while proc.returncode is None:
        rss = _resident(proc.pid)
        if rss is None:
            return False  # ended (or no /proc): the wall-clock budget still holds
        if rss > limit:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return True
        await asyncio.sleep(MEMORY_POLL_S)
    return False


def _resident(pid: int) -> int | None:
    """Resident bytes of a process (a read of a few hundred bytes from procfs, never a disk)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")), 0)
    except (OSError, ValueError, IndexError):
        return None


def _memory_message(memory: int) -> str:
    return f"the dry run needed more than {memory // 2**20} MiB of memory"


def _answer(out: bytes, err: bytes, returncode: int | None) -> dict[str, Any]:
    """The child's answer line as a result, or the exception it stands for."""
    try:
        answer = orjson.loads(out)
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("result"), dict):
        return answer["result"]  # type: ignore[no-any-return]
    if isinstance(answer, dict) and "error" in answer:
        if answer.get("limit"):
            raise OverBudget(str(answer["limit"]), str(answer["error"]))
        raise ChildFailed(f"the dry run failed: {answer['error']}")  # the rule was validated before
    tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
    raise ChildFailed(f"the dry run's process ended with status {returncode}: {' | '.join(tail)}")


# ---------------------------------------------------------------- the child


def _cap(memory_bytes: int, seconds: float) -> None:
    cpu = int(seconds) + 1
    for limit, value in ((resource.RLIMIT_AS, 2 * memory_bytes), (resource.RLIMIT_CPU, cpu)):
        try:
            resource.setrlimit(limit, (value, value + (limit == resource.RLIMIT_CPU)))
        except (OSError, ValueError) as exc:
            print(f"dry run: limit {limit} not set: {exc}", file=sys.stderr)
    # the wall clock, for a child left behind: SIGALRM's default action ends the process
    signal.alarm(int(seconds) + 2)


class GatewayOpener:
    """Opens sealed journal cells (`rules.backfill.Opener`) by asking the gateway at the other end
    of `ask` and `replies` (the child's stdout and stdin), one request a page. With nobody to ask
    (the gateway gone, the child run on its own) they stay sealed."""

    def __init__(self, ask: IO[bytes], replies: IO[bytes]) -> None:
        self._ask = ask
        self._replies = replies
        self._alone = False

    def __call__(self, cells: Sequence[tuple[str, float, str, bytes]]) -> list[Any]:
        if not self._alone:
            asked = [[c, ts, src, base64.b64encode(env).decode("ascii")] for c, ts, src, env in cells]
            try:
                self._ask.write(orjson.dumps({"open": asked}) + b"\n")
                self._ask.flush()
                reply = orjson.loads(self._replies.readline(MAX_LINE) or b"null")
            except (OSError, orjson.JSONDecodeError):
                reply = None
            opened = reply.get("opened") if isinstance(reply, dict) else None
            if isinstance(opened, list) and len(opened) == len(cells):
                return opened
            self._alone = True
        from edge.store.rows import SEALED_PAYLOAD

        return [None if c == "value" else SEALED_PAYLOAD for c, _, _, _ in cells]


def run(request: dict[str, Any], opener: GatewayOpener | None = None) -> dict[str, Any]:
    """The dry run a request asks for (in this process; `main` caps the process first), sealed
    records opened by `opener`."""
    from rules.cron import site_tz
    from rules.guards import LimitExceeded
    from rules.model import RuleErrors, parse_rule
    from rules.replay import StoredJournal, dry_run

    try:
        compiled = parse_rule(request["rule"])
    except RuleErrors as exc:
        return {"error": str(exc), "limit": ""}
    journal = StoredJournal(request["journal"])
    try:
        result = dry_run(
            journal,
            compiled,
            site_tz(request.get("timezone")),
            float(request["since"]),
            float(request["until"]),
            int(request["max_rows"]),
            point_classes=request.get("point_classes"),
            opener=opener,
        )
    except LimitExceeded as exc:  # a message template over its size limit
        return {"error": str(exc), "limit": exc.limit}
    finally:
        journal.close()
    firings = result["firings"]
    result["firings_total"] = len(firings)
    result["truncated"] = len(firings) > MAX_FIRINGS
    result["firings"] = firings[:MAX_FIRINGS]
    return {"result": result}


def main() -> int:
    request = orjson.loads(sys.stdin.buffer.readline(MAX_REQUEST))
    memory = int(request["memory_bytes"])
    _cap(memory, float(request["seconds"]))
    try:
        answer = run(request, GatewayOpener(sys.stdout.buffer, sys.stdin.buffer))
    except MemoryError:
        answer = {"error": _memory_message(memory), "limit": "memory"}
    sys.stdout.buffer.write(orjson.dumps(answer, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n")
    sys.stdout.buffer.flush()
    return 0 if "result" in answer else 1


if __name__ == "__main__":
    sys.exit(main())
