"""Slow HTTP clients for the flood test, run as their own process (`python -m tests.web.slow_clients
PORT COUNT SECONDS`): COUNT connections to 127.0.0.1:PORT from 25 loopback addresses
(127.0.0.2-26: 40 each, more than one address may hold, and more in all than the server holds
with the fd limit of a unit without LimitNOFILE), half trickling header bytes one a second, half idle. A connection the server
closes or refuses is opened again after a pause, so the pressure lasts until SECONDS have passed;
then it prints its counts as one JSON line and exits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time

SOURCES = [f"127.0.0.{i}" for i in range(2, 27)]
REOPEN_AFTER = 2.0  # seconds before a refused or closed connection is opened again
TRICKLE_EVERY = 1.0


async def one(port: int, source: str, trickle: bool, stop_at: float, counts: dict[str, int]) -> None:
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            counts["refused_at_connect"] += 1
            await asyncio.sleep(REOPEN_AFTER)  # pacing the load, not waiting for a condition
            continue
        counts["opened"] += 1
        counts["open"] += 1
        head = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: "
        try:
            while time.monotonic() < stop_at:
                if trickle:
                    writer.write(head[:1] or b"a")
                    head = head[1:]
                try:
                    if await asyncio.wait_for(reader.read(1), TRICKLE_EVERY) == b"":
                        break
                except TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            counts["open"] -= 1
            writer.close()
        if time.monotonic() < stop_at:
            counts["closed_by_server"] += 1
            await asyncio.sleep(REOPEN_AFTER)


async def main(port: int, count: int, seconds: float) -> None:
    counts = {"opened": 0, "open": 0, "refused_at_connect": 0, "closed_by_server": 0, "max_open": 0}
    stop_at = time.monotonic() + seconds
    tasks = [
        asyncio.ensure_future(one(port, SOURCES[i % len(SOURCES)], i % 2 == 0, stop_at, counts))
        for i in range(count)
    ]
    print(json.dumps({"started": count}), flush=True)
    while time.monotonic() < stop_at:
        counts["max_open"] = max(counts["max_open"], counts["open"])
        await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
