"""The web server's connection limits on a real runtime over real sockets: slow headers time out,
one address cannot hold more than its share, the total cap refuses the rest cheaply and logs it
once, and running out of descriptors on accept() neither spins nor floods the log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.api import limits
from edge.api.keys import CONNECTIONS_KEY
from edge.api.limits import PER_CLIENT, ConnectionStats
from edge.api.tokens import create_token
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import SITE

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n"


@pytest.fixture
async def fast_timeout_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setattr("edge.api.app.HEADER_TIMEOUT", 1.0)
    async with running_site(tmp_path, SITE) as rt:
        yield rt


def stats_of(rt: Any) -> ConnectionStats:
    return rt.web_runner.app[CONNECTIONS_KEY]  # type: ignore[no-any-return]


async def connect(rt: Any, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", rt.web_port, local_addr=(source, 0))


async def healthz(rt: Any, source: str = "127.0.0.1") -> bytes:
    """The status line of a /healthz answer on a new connection from `source`, or b"" when the
    server closed the connection without answering."""
    try:  # a refused connection is reset: at connect, at the write or at the read
        reader, writer = await connect(rt, source)
    except ConnectionResetError:
        return b""
    try:
        writer.write(HEALTHZ)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.readline()
    except ConnectionResetError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def upload_head(token: str, length: int) -> bytes:
    """The head of a rule-editor request whose body is `length` bytes."""
    return (
        b"POST /api/v1/ui/yaml HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n".encode()
    )


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(1) == b""
    except ConnectionResetError:
        return True


async def test_a_client_trickling_its_headers_is_closed_after_the_header_timeout(
    fast_timeout_site: Any,
) -> None:
    rt = fast_timeout_site
    reader, writer = await connect(rt)
    closed = asyncio.ensure_future(closed_by_server(reader))
    try:
        async with asyncio.timeout(10):  # the timeout is 1 s: bytes arriving must not extend it
            for byte in b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: " + b"a" * 1000:
                if closed.done():
                    break
                writer.write(bytes([byte]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(closed), 0.1)
        assert await closed
    finally:
        closed.cancel()
        writer.close()
    # an idle keep-alive connection is closed too, after answering its request
    reader, writer = await connect(rt)
    writer.write(HEALTHZ.replace(b"Connection: close", b"Connection: keep-alive"))
    async with asyncio.timeout(10):
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
        length = int(head.split("content-length:")[1].split()[0])
        await reader.readexactly(length)
        assert await closed_by_server(reader)
    writer.close()
    assert stats_of(rt).open <= 1  # the slots came back


async def test_one_address_holds_at_most_its_share(site: Any) -> None:
    stats = stats_of(site)
    held = [await connect(site, "127.0.0.2") for _ in range(PER_CLIENT)]
    try:
        await until(lambda: stats.by_client.get("127.0.0.2") == PER_CLIENT, what="all admitted")
        assert await healthz(site, "127.0.0.2") == b"", "the connection past the cap must be closed"
        assert stats.refused_per_client == 1
        # other addresses are served, and the address gets a slot back when one of its closes
        assert (await healthz(site, "127.0.0.1")).startswith(b"HTTP/1.1 200")
        token = create_token(site.state, "scraper", ["read"])
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"http://127.0.0.1:{site.web_port}/metrics", headers={"Authorization": f"Bearer {token}"}
            ) as r,
        ):
            metrics = await r.text()
        assert 'edge_web_connections_refused_total{reason="per_client_cap"} 1.0' in metrics
        assert f'edge_web_connections_cap{{scope="per_client"}} {float(PER_CLIENT)}' in metrics
        held.pop()[1].close()
        await until(lambda: stats.by_client.get("127.0.0.2") == PER_CLIENT - 1, what="slot released")
        assert (await healthz(site, "127.0.0.2")).startswith(b"HTTP/1.1 200")
    finally:
        for _, w in held:
            w.close()


async def test_the_total_cap_evicts_the_longest_idle_then_refuses_and_logs_once(
    site: Any, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.api.limits")
    stats = stats_of(site)
    stats.total = 6
    # a browser's keep-alive connection, served once, then five connections that never send a
    # whole request, from six addresses
    served = await connect(site, "127.0.0.10")
    served[1].write(HEALTHZ.replace(b"Connection: close", b"Connection: keep-alive"))
    assert (await served[0].readline()).startswith(b"HTTP/1.1 200")
    idle = [served]
    for i in range(1, 6):
        idle.append(await connect(site, f"127.0.0.{10 + i}"))
        await until(lambda: stats.open == len(idle), what="admitted")
    await until(lambda: len(stats.fresh) == 5 and len(stats.idle) == 1, what="five fresh, one served")
    # a seventh address is served: the oldest connection without a request makes room, not the
    # older one that was served and waits for its next request
    assert (await healthz(site, "127.0.0.30")).startswith(b"HTTP/1.1 200")
    assert stats.evicted == 1 and stats.refused_total == 0
    async with asyncio.timeout(5):
        assert await closed_by_server(idle[1][0])
    assert served[1].transport is not None and not served[1].transport.is_closing()
    assert stats.by_client.get("127.0.0.10") == 1
    for _, w in idle:
        w.close()
    await until(lambda: stats.open == 0, what="slots released")

    # every connection busy with a request (a body that has not arrived yet): nothing to evict
    token = create_token(site.state, "uploader", ["read"])
    busy = []
    for i in range(6):
        reader, writer = await connect(site, f"127.0.0.{10 + i}")
        writer.write(upload_head(token, 100))
        busy.append((reader, writer))
    try:
        await until(lambda: stats.open == 6 and not stats.fresh and not stats.idle, what="six busy")
        for i in range(20):
            assert await healthz(site, f"127.0.0.{30 + i}") == b""
        assert stats.refused_total == 20 and stats.open == 6 and stats.evicted == 1
        # the eviction was logged; the refusals within the minute only count
        lines = [r for r in caplog.records if "web connections refused" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert "total cap of 6" in lines[0].getMessage()
    finally:
        for _, w in busy:
            w.close()
    await until(lambda: stats.open == 0, what="slots released")
    assert (await healthz(site)).startswith(b"HTTP/1.1 200")


async def test_accept_out_of_descriptors_pauses_instead_of_spinning(site: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    stats = stats_of(site)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients = [socket.socket() for _ in range(5)]  # made before the limit drops: connect needs no fd
    for c in clients:
        c.setblocking(False)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")), hard))
        try:
            for c in clients:
                with contextlib.suppress(BlockingIOError):
                    c.connect(("127.0.0.1", site.web_port))
            # each failure pauses accepting for ACCEPT_PAUSE: three failures span two pauses, where
            # a loop that spun on the readable listener would count thousands
            await until(lambda: stats.accept_errors >= 3, timeout=10, what="accept failing, retried")
            errors = stats.accept_errors
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert errors <= 5, f"{errors} accept errors in {3 * limits.ACCEPT_PAUSE} s: the loop spun"
        await until(lambda: stats.accepted >= 5, timeout=10, what="the waiting connections accepted")
        loop = asyncio.get_running_loop()
        for c in clients:  # the server runs on this loop: the sockets are read through it
            await loop.sock_sendall(c, HEALTHZ)
            async with asyncio.timeout(5):
                assert (await loop.sock_recv(c, 100)).startswith(b"HTTP/1.1 200")
        logged = [r for r in caplog.records if "accept" in r.getMessage() or "descriptors" in r.getMessage()]
        assert len(logged) == 1, [r.getMessage() for r in logged]
    finally:
        for c in clients:
            c.close()


async def test_a_body_that_does_not_arrive_in_time_is_408(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.api.problem.BODY_TIMEOUT", 1.0)
    token = create_token(site.state, "uploader", ["read"])
    reader, writer = await connect(site)
    body = b'{"text": "id: a"}'
    writer.write(upload_head(token, len(body) + 1) + body)  # one byte short: the server waits for it
    try:
        async with asyncio.timeout(10):
            status = await reader.readline()
            rest = await reader.read(4000)
        assert status.startswith(b"HTTP/1.1 408"), status + rest
        assert b"within 1 s" in rest
    finally:
        writer.close()
    await until(lambda: stats_of(site).open == 0, what="the connection closed")
