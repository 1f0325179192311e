"""A real HTTP server on 127.0.0.1 for a test: a webhook receiver, an upstream that fails or hangs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving(posts: dict[str, Handler], **runner_options: Any) -> AsyncIterator[int]:
    """An aiohttp server on a port the kernel picks, answering POST at each path of `posts` with
    its handler; yields the port, and shuts the server down on exit (`runner_options` go to
    `web.AppRunner`, e.g. `shutdown_timeout` for handlers that never answer)."""
    app = web.Application()
    for path, handler in posts.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()
