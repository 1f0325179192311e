"""Shared test plumbing for the sync tests: the receiver process, free ports, condition waits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import select
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.model import Event, PointInfo, PointType, Privacy, Reading
from tests.support.ports import free_port as free_port  # re-exported for the sync tests
from tests.support.procs import terminate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


class Receiver:
    """The receiver script in its own process (see receiver.py)."""

    def __init__(self, *args: str, port: int = 0, client_ssl: ssl.SSLContext | None = None) -> None:
        self.client_ssl = client_ssl  # for a receiver serving (m)TLS: how the test itself connects
        scheme = "https" if client_ssl is not None else "http"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "receiver.py"), "--port", str(port), *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"receiver did not start: {line!r}")
        self.port = int(line.split()[1])
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.url = f"{self.base}/ingest"

    async def log(self) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.base}/log", ssl=self.client_ssl or True) as r:
            return await r.json()  # type: ignore[no-any-return]

    async def control(self, **body: Any) -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"http://127.0.0.1:{self.port}/control", json=body) as r,
        ):
            assert r.status == 200

    async def accepted(self) -> list[dict[str, Any]]:
        return [e for e in await self.log() if e["outcome"].endswith("ok")]

    def stop(self) -> None:
        terminate(self.proc, timeout=5)


@contextlib.asynccontextmanager
async def answering_with(
    handler: Callable[[Any], Awaitable[Any]], max_body: int = 1024**2
) -> AsyncIterator[str]:
    """An aiohttp receiver in this test's event loop whose POST /ingest is `handler` (a test's own
    answers: refusals, odd bodies); yields its URL and stops with the test."""
    from aiohttp import web

    app = web.Application(client_max_size=max_body)
    app.router.add_post("/ingest", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/ingest"
    finally:
        await runner.cleanup()


def sink(url: str, **extra: object) -> dict[str, object]:
    """An `upstream:` entry: HTTP sink "central" posting to `url` in small, quick batches with
    short retries; `extra` replaces or adds keys."""
    cfg: dict[str, object] = {
        "id": "central",
        "type": "http",
        "url": url,
        "batch": {"max_items": 50, "max_age": "50ms"},
        "retry": {"initial": "50ms", "max": "500ms"},
        "timeout": {"connect": "2s", "total": "5s"},
    }
    cfg.update(extra)
    return cfg


async def wait_for(cond: Callable[[], Awaitable[bool] | bool], timeout: float, what: str) -> None:
    """Poll `cond` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


class Collector:
    """Every request body POSTed to a real in-process HTTP server, as the receiver read it (after
    gzip), per path: for tests that look at the bytes themselves, not only the parsed batch."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _take(self, request: Any) -> Any:
        from aiohttp import web

        self.bodies.setdefault(request.path, []).append(await request.read())
        return web.Response(status=204)

    @contextlib.asynccontextmanager
    async def serving(self, *paths: str) -> AsyncIterator[Collector]:
        from tests.support.servers import serving

        async with serving(dict.fromkeys(paths, self._take)) as port:
            self.port = port
            yield self

    def raw(self, path: str) -> bytes:
        return b"\n".join(self.bodies.get(path, []))


def key_file(directory: Path, name: str) -> tuple[Path, bytes]:
    """A pseudonym key file only its owner may read (`NAME.key` in `directory`), and its key."""
    key = secrets.token_hex(32).encode()
    path = directory / f"{name}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")  # the newline an editor adds is not part of the key
    return path, key


PLATE = "沪A23522"
LAST_PLATE = PointInfo(
    "gate-south.last_plate", "gate-south", "last_plate", PointType.STR, privacy=Privacy.PERSONAL
)


def passage(n: int) -> list[Any]:
    """A gate's `vehicle_passage` event of PLATE, the gate's `last_plate` point reading it and a
    rule's alert on that point (an alert carries the point's `value`)."""
    t = time.time() + n * 1e-3
    alert = {
        "rule": "plate-seen",
        "state": "fired",
        "point": LAST_PLATE.id,
        "value": PLATE,
        "privacy": "personal",
    }
    return [
        Event("vehicle_passage", "gate-south", payload={"plate": PLATE, "direction": "in", "n": n}, ts=t),
        Reading(t, LAST_PLATE.id, PLATE),
        Event("alert", "plate-seen", payload=alert, ts=t),
    ]


def record_plain_reads(svc: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The list every later `read_plain` of `svc` appends its result to (None: not served)."""
    results: list[Any] = []
    read_plain = svc.reader.read_plain

    def recorded(*args: Any) -> Any:
        results.append(read_plain(*args))
        return results[-1]

    monkeypatch.setattr(svc.reader, "read_plain", recorded)
    return results
