"""The rule editor's YAML ⇄ JSON conversion, run in a worker process.

Parsing YAML is pure Python and slow (about 0.7 s for 64 KiB on a 2-core box); in a thread it would
still hold the GIL against the event loop, which then waits up to a switch interval for every
syscall it makes, so ingest and every other request would stall. One worker process does the work
(a second one would only compete for the same two cores); a request that finds MAX_PENDING
conversions already queued is answered 429 at once. Sizes are capped before anything is sent to
the worker: MAX_TEXT_BYTES of YAML, and the JSON body's own cap and nesting limit
(`edge.api.problem`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from asyncio.subprocess import PIPE
from typing import Any

import orjson
import yaml

from edge.api.problem import MAX_DEPTH, Problem, too_deep
from edge.yamlpos import YamlError
from edge.yamlpos import load as load_yaml

MAX_TEXT_BYTES = 64 * 1024  # one rule's YAML (UTF-8); real rules are a few hundred bytes
MAX_BODY_BYTES = 256 * 1024  # the request: the text JSON-escaped, or the data to dump
MAX_NODES = 20_000  # values once aliases are expanded
MAX_PENDING = 2  # conversions running or queued; more are refused with 429
RETRY_AFTER_S = 2
CONVERT_TIMEOUT = 30.0  # seconds for one conversion (64 KiB takes about 0.7 s here) before a restart
WORKER_IDLE_S = 60.0  # the worker (about 60 MB once it has parsed 64 KiB) ends after this long unused


def _error(
    status: int,
    title: str,
    message: str,
    line: int | None = None,
    column: int | None = None,
    key: str = "msg.yaml.invalid",
) -> bytes:
    # a problem document that also carries the `error` the rule editor shows next to the text
    return orjson.dumps(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": message,
            "message_key": key,
            "args": {"message": message},
            "error": {"message": message, "line": line, "column": column},
        }
    )


def _editor_problem(status: int, title: str, message: str, **extra: Any) -> Problem:
    return Problem(status, title, message, error={"message": message, "line": None, "column": None}, **extra)


def _too_deep_error() -> tuple[int, bytes]:
    message = f"the YAML nests lists and mappings more than {MAX_DEPTH} levels deep"
    return 422, _error(422, "YAML nested too deep", message, key="msg.yaml.too_deep")


def convert(kind: str, value: Any) -> tuple[int, bytes]:
    """In the worker: ("text", yaml) → (200, {"data"}) or a located 422; ("data", obj) → {"text"}."""
    if kind == "data":
        text = yaml.safe_dump(value, allow_unicode=True, sort_keys=False, width=100)
        return 200, orjson.dumps({"text": text})
    try:
        data, _ = load_yaml(value, "rule", max_nodes=MAX_NODES)
        if too_deep(data):
            return _too_deep_error()
        return 200, orjson.dumps({"data": data})
    except RecursionError:
        return _too_deep_error()
    except YamlError as exc:
        first = exc.problems[0]
        # the editor says "YAML syntax:" itself; the loader's own prefix would make it twice
        message = first.message.removeprefix("YAML syntax error: ")
        return 422, _error(422, "Invalid YAML", message, first.line, first.column)
    except orjson.JSONEncodeError as exc:  # e.g. an integer past 64 bits
        return 422, _error(422, "Invalid YAML", f"not representable in JSON: {exc}")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return 422, _error(422, "Invalid YAML", str(exc.problem or exc), line, column)
    except yaml.YAMLError as exc:
        return 422, _error(422, "Invalid YAML", str(exc))


class YamlWorker:
    """The worker process (`python -m edge.web.rule_yaml`, started on first use and again after it
    dies) and the conversions waiting for it. A plain child process rather than multiprocessing:
    multiprocessing's spawn re-runs the parent's main script in the child, which a program that
    embeds the runtime may not guard."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.turn = asyncio.Lock()  # one conversion at a time on the worker's pipe
        self.pending = 0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.retiring: asyncio.Task[None] | None = None

    async def run(self, kind: str, value: Any) -> tuple[int, bytes]:
        if kind == "text" and len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
            raise _editor_problem(
                413,
                "YAML text too large",
                f"a rule's YAML is at most {MAX_TEXT_BYTES} bytes ({MAX_TEXT_BYTES // 1024} KiB)",
                max_bytes=MAX_TEXT_BYTES,
            )
        if self.pending >= MAX_PENDING:
            raise _editor_problem(
                429,
                "YAML helper busy",
                f"{MAX_PENDING} conversions are already running or queued; retry in {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        try:
            request = orjson.dumps([kind, value])
        except orjson.JSONEncodeError as exc:  # a lone surrogate from a \ud800 escape
            raise _editor_problem(422, "Invalid text", f"not valid Unicode text: {exc}") from None
        self.pending += 1
        try:
            async with self.turn:
                return await self._exchange(request)
        finally:
            self.pending -= 1
            if self.idle_timer is not None:
                self.idle_timer.cancel()
            self.idle_timer = asyncio.get_running_loop().call_later(WORKER_IDLE_S, self._retire)

    def _retire(self) -> None:
        if not self.pending and self.proc is not None:
            self.retiring = asyncio.ensure_future(self.close())

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            if self.proc is None or self.proc.returncode is not None:
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", __name__, stdin=PIPE, stdout=PIPE
                )
            assert self.proc.stdin is not None and self.proc.stdout is not None
            async with asyncio.timeout(CONVERT_TIMEOUT):
                self.proc.stdin.write(len(request).to_bytes(4, "big") + request)
                await self.proc.stdin.drain()
                head = await self.proc.stdout.readexactly(6)
                return int.from_bytes(head[:2], "big"), await self.proc.stdout.readexactly(
                    int.from_bytes(head[2:], "big")
                )
        except BaseException as exc:
            # a worker that died, hung or was left mid-answer by a cancelled request is not reused
            await self.close()
            if isinstance(exc, OSError | EOFError | TimeoutError):
                raise _editor_problem(
                    503, "YAML helper unavailable", "its worker process stopped; retry"
                ) from None
            raise

    async def close(self, _app: Any = None) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        proc, self.proc = self.proc, None
        if self.retiring is not None and self.retiring is not asyncio.current_task():
            await self.retiring
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def serve() -> None:
    """The worker's loop: a 4-byte length and a JSON [kind, value] in, a 2-byte status, a 4-byte
    length and the answer's JSON out; it ends when the gateway closes the pipe."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while len(head := stdin.read(4)) == 4:
        kind, value = orjson.loads(stdin.read(int.from_bytes(head, "big")))
        status, body = convert(kind, value)
        stdout.write(status.to_bytes(2, "big") + len(body).to_bytes(4, "big") + body)
        stdout.flush()


if __name__ == "__main__":
    serve()
