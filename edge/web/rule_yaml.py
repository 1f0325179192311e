"""The rule editor's YAML ⇄ JSON conversion, run in a worker process.

Parsing YAML is pure Python and slow (about 0.7 s for 64 KiB on a 2-core box); in a thread it would
still hold the GIL against the event loop, which then waits up to a switch interval for every
syscall it makes, so ingest and every other request would stall. One worker process does the work
(a second one would only compete for the same two cores); a request that finds MAX_PENDING
conversions already queued is answered 429 at once. Sizes are capped before anything is sent to
the worker: MAX_TEXT_BYTES of YAML, and the JSON body's own cap and nesting limit
(`edge.web.problem`).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import orjson
import yaml

from edge.web.problem import MAX_DEPTH, Problem, too_deep
from edge.yamlpos import YamlError
from edge.yamlpos import load as load_yaml

MAX_TEXT_BYTES = 64 * 1024  # one rule's YAML (UTF-8); real rules are a few hundred bytes
MAX_BODY_BYTES = 256 * 1024  # the request: the text JSON-escaped, or the data to dump
MAX_NODES = 20_000  # values once aliases are expanded
MAX_PENDING = 2  # conversions running or queued; more are refused with 429
RETRY_AFTER_S = 2


def _error(
    status: int, title: str, message: str, line: int | None = None, column: int | None = None
) -> bytes:
    # a problem document that also carries the `error` the rule editor shows next to the text
    return orjson.dumps(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": message,
            "error": {"message": message, "line": line, "column": column},
        }
    )


def _editor_problem(status: int, title: str, message: str, **extra: Any) -> Problem:
    return Problem(status, title, message, error={"message": message, "line": None, "column": None}, **extra)


def _too_deep_error() -> tuple[int, bytes]:
    message = f"the YAML nests lists and mappings more than {MAX_DEPTH} levels deep"
    return 422, _error(422, "YAML nested too deep", message)


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
        return 422, _error(422, "Invalid YAML", first.message, first.line, first.column)
    except orjson.JSONEncodeError as exc:  # e.g. an integer past 64 bits
        return 422, _error(422, "Invalid YAML", f"not representable in JSON: {exc}")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return 422, _error(422, "Invalid YAML", str(exc.problem or exc), line, column)
    except yaml.YAMLError as exc:
        return 422, _error(422, "Invalid YAML", str(exc))


class YamlWorker:
    """The worker process (started on first use) and the count of conversions waiting for it."""

    def __init__(self) -> None:
        self.pool: ProcessPoolExecutor | None = None
        self.pending = 0
        self.refused = 0  # requests answered 429 because MAX_PENDING were queued

    async def run(self, kind: str, value: Any) -> tuple[int, bytes]:
        if kind == "text" and len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
            raise _editor_problem(
                413,
                "YAML text too large",
                f"a rule's YAML is at most {MAX_TEXT_BYTES} bytes ({MAX_TEXT_BYTES // 1024} KiB)",
                max_bytes=MAX_TEXT_BYTES,
            )
        if self.pending >= MAX_PENDING:
            self.refused += 1
            raise _editor_problem(
                429,
                "YAML helper busy",
                f"{MAX_PENDING} conversions are already running or queued; retry in {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.pending += 1
        try:
            if self.pool is None:
                self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, convert, kind, value)
        except BrokenProcessPool:
            self.pool = None  # the worker died (killed, out of memory): the next request starts one
            raise _editor_problem(
                503, "YAML helper unavailable", "its worker process stopped; retry"
            ) from None
        finally:
            self.pending -= 1

    async def close(self, _app: Any = None) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
