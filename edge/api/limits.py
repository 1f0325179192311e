"""How many connections the web server holds, and for how long.

The server accepts on its own listening sockets instead of leaving that to `loop.create_server`,
because only here the peer address is known before a transport and a request handler exist: a
connection past the per-client cap or the total cap is closed at once with a reset (a few
syscalls, no buffers, no handler), never queued until file descriptors run out. The total cap
comes from the process's soft RLIMIT_NOFILE at start, leaving room for devices, sinks and the
SQLite files. When the total is reached, a new connection takes the place of the oldest one that
has not yet sent a whole request (a slow client still sending its headers), or failing that of
the keep-alive connection idle longest, so clients spread over many addresses cannot lock
everyone out until their headers time out; only when every connection is serving a request is
the new one refused. When accept() itself fails for want of descriptors (EMFILE), accepting pauses
briefly instead of spinning, and the failure is a counter, logged at most once a minute.

Slow clients: a connection that has not sent complete request headers within HEADER_TIMEOUT of
connecting (or of its previous response) is closed, and so is an idle keep-alive connection
(aiohttp's keep-alive timer covers both); a TLS handshake has HANDSHAKE_TIMEOUT; a request body
has `edge.api.problem.BODY_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import itertools
import logging
import resource
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web

log = logging.getLogger("edge.api.limits")

HEADER_TIMEOUT = 10.0  # seconds to send a request's headers; also the idle keep-alive timeout
HANDSHAKE_TIMEOUT = 10.0  # seconds for a TLS handshake
PER_CLIENT = 32  # connections one address may hold (a browser uses about 6, plus live streams)
MAX_CONNECTIONS = 1024  # whatever the fd limit, past this memory matters on a small gateway
FD_RESERVE_MIN = 128  # descriptors kept for devices, sinks, SQLite (journal, WAL, state) and logs
MIN_CONNECTIONS = 16
LOG_EVERY = 60.0  # seconds between two log lines about refused connections
ACCEPT_PAUSE = 0.5  # seconds without accepting after accept() ran out of descriptors
ACCEPT_BATCH = 256  # accepts per wake-up: refusing is cheap, and a full queue drops new SYNs
BACKLOG = 1024  # the kernel's accept queue; when it overflows a client waits 1 s to retry its SYN
_RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST and keeps no TIME_WAIT state


def connection_budget(soft_nofile: int | None = None) -> int:
    """The total cap for a process whose soft fd limit is `soft_nofile` (default: this one's)."""
    if soft_nofile is None:
        soft_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_nofile == resource.RLIM_INFINITY or soft_nofile <= 0:
        return MAX_CONNECTIONS
    reserve = max(FD_RESERVE_MIN, soft_nofile // 4)
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, soft_nofile - reserve))


@dataclass
class ConnectionStats:
    """The web server's connection counters (read by /metrics and the status)."""

    per_client: int = PER_CLIENT
    total: int = MAX_CONNECTIONS
    open: int = 0
    accepted: int = 0
    refused_per_client: int = 0
    refused_total: int = 0
    evicted: int = 0  # idle connections closed to admit a new one at the total cap
    accept_errors: int = 0  # accept() failed (out of descriptors or buffers)
    by_client: dict[str, int] = field(default_factory=dict)
    #: admitted connections that have not sent a whole request yet, oldest first
    fresh: dict[_Slot, None] = field(default_factory=dict)
    #: connections that were served and wait for their next request, longest idle first
    idle: dict[_Slot, None] = field(default_factory=dict)
    _logged_at: float = -LOG_EVERY
    _logged_counts: tuple[int, int, int, int] = (0, 0, 0, 0)

    def as_dict(self) -> dict[str, int]:
        return {
            "open": self.open,
            "accepted": self.accepted,
            "refused_per_client": self.refused_per_client,
            "refused_total": self.refused_total,
            "evicted": self.evicted,
            "accept_errors": self.accept_errors,
            "per_client_cap": self.per_client,
            "total_cap": self.total,
        }

    def evict_idlest(self) -> bool:
        """Close the oldest connection without a request, else the one idle longest, to make room;
        False when every connection is serving a request."""
        for slot in itertools.chain(self.fresh, self.idle):
            if slot.transport is not None:
                slot.transport.abort()
            elif slot.setup is not None:  # accepted on this loop turn, or still in its TLS handshake
                slot.setup.cancel()
            else:
                continue
            slot.release()  # now: its connection_lost comes on a later loop turn
            self.evicted += 1
            self.note_trouble("total cap reached, the longest idle connection closed")
            return True
        return False

    def note_trouble(self, what: str) -> None:
        """Log the first refusal or accept error, then at most one line a minute with the counts."""
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY:
            return
        counts = (self.refused_per_client, self.refused_total, self.evicted, self.accept_errors)
        since = [c - p for c, p in zip(counts, self._logged_counts, strict=True)]
        self._logged_at, self._logged_counts = now, counts
        log.warning(
            "web connections refused (%s): %d over the per-client cap of %d, %d over the total cap "
            "of %d, %d idle ones closed to make room, %d accept errors since the last report; %d open",
            what,
            since[0],
            self.per_client,
            since[1],
            self.total,
            since[2],
            since[3],
            self.open,
            extra={"connections": self.as_dict()},
        )


class _Slot:
    """One admitted connection's share of the caps, given back exactly once."""

    __slots__ = ("busy", "client", "released", "setup", "stats", "transport")

    def __init__(self, stats: ConnectionStats, client: str) -> None:
        self.stats, self.client, self.released = stats, client, False
        self.transport: asyncio.Transport | None = None  # set once the handler has it
        self.setup: asyncio.Task[Any] | None = None  # the task making the transport
        self.busy = 0  # requests in progress
        stats.open += 1
        stats.accepted += 1
        stats.by_client[client] = stats.by_client.get(client, 0) + 1
        stats.fresh[self] = None

    def request_started(self) -> None:
        self.busy += 1
        self.stats.fresh.pop(self, None)
        self.stats.idle.pop(self, None)

    def request_done(self) -> None:
        self.busy -= 1
        if not self.busy and not self.released:
            self.stats.idle[self] = None  # the most recently active: evicted last

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.stats.fresh.pop(self, None)
        self.stats.idle.pop(self, None)
        self.stats.open -= 1
        left = self.stats.by_client[self.client] - 1
        if left:
            self.stats.by_client[self.client] = left
        else:
            del self.stats.by_client[self.client]


class _Counted(asyncio.Protocol):
    """The request handler, as the transport sees it: gives the slot back when the connection ends."""

    __slots__ = ("inner", "slot")

    def __init__(self, inner: asyncio.Protocol, slot: _Slot) -> None:
        self.inner, self.slot = inner, slot

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.slot.transport = cast(asyncio.Transport, transport)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            self.slot.release()


def _reset(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    conn.close()


class GatedSite(web.BaseSite):
    """A TCP site that admits a connection only within the per-client and total caps."""

    __slots__ = ("_closed", "_host", "_paused", "_port", "_socks", "_stats", "_tasks")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        stats: ConnectionStats,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = BACKLOG,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host, self._port, self._stats = host, port, stats
        self._socks: list[socket.socket] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._paused = False
        self._closed = False

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one the kernel gave for port 0)."""
        return int(self._socks[0].getsockname()[1]) if self._socks else self._port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, type_, proto, _, addr in dict.fromkeys(infos):
                sock = socket.socket(family, type_, proto)
                self._socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                sock.listen(self._backlog)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        self._resume()

    async def stop(self) -> None:
        self._closed = True
        self._close_sockets()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().stop()

    def _close_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._socks:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()

    def _resume(self) -> None:
        self._paused = False
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        for sock in self._socks:
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _pause(self) -> None:
        if self._paused:
            return
        self._paused = True
        loop = asyncio.get_running_loop()
        for sock in self._socks:
            loop.remove_reader(sock.fileno())
        loop.call_later(ACCEPT_PAUSE, self._resume)

    def _accept(self, listener: socket.socket) -> None:
        stats = self._stats
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Linux keeps the listener readable while accept() fails: stop watching it for a
                # moment, or the loop spins on the same error.
                stats.accept_errors += 1
                stats.note_trouble(
                    "out of file descriptors"
                    if exc.errno in _RESOURCE_ERRNOS
                    else f"accept failed: {exc.strerror}"
                )
                self._pause()
                return
            client = str(addr[0]) if isinstance(addr, tuple) else "local"
            if stats.by_client.get(client, 0) >= stats.per_client:
                stats.refused_per_client += 1
                _reset(conn)
                stats.note_trouble(f"per-client cap reached by {client}")
            elif stats.open >= stats.total and not stats.evict_idlest():
                stats.refused_total += 1
                _reset(conn)
                stats.note_trouble("total cap reached, every connection busy")
            else:
                conn.setblocking(False)
                slot = _Slot(stats, client)
                slot.setup = task = asyncio.ensure_future(self._serve(conn, slot))
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._served, conn, slot))

    async def _serve(self, conn: socket.socket, slot: _Slot) -> None:
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.Protocol] = server
        loop = asyncio.get_running_loop()
        if self._ssl_context is not None:
            await loop.connect_accepted_socket(
                lambda: _Counted(factory(), slot),
                conn,
                ssl=self._ssl_context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        else:
            await loop.connect_accepted_socket(lambda: _Counted(factory(), slot), conn)

    def _served(self, conn: socket.socket, slot: _Slot, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        slot.setup = None
        if not task.cancelled() and task.exception() is None:
            return
        # a failed, timed-out or evicted TLS handshake (or a setup cancelled before it began) never
        # reaches the handler: the slot and the socket are given back here
        slot.release()
        conn.close()
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, OSError | ssl.SSLError | TimeoutError):
            log.debug("connection setup failed", exc_info=exc)


@web.middleware
async def busy_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Mark the request's connection busy while it is handled, so the total cap never evicts it."""
    protocol = request.transport.get_protocol() if request.transport is not None else None
    slot = protocol.slot if isinstance(protocol, _Counted) else None
    if slot is None:
        return await handler(request)  # type: ignore[no-any-return]
    slot.request_started()
    try:
        return await handler(request)  # type: ignore[no-any-return]
    finally:
        slot.request_done()
