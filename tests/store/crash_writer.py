"""Crash-test subject: opens a Journal and appends readings at full speed forever, printing nothing.

Run as `python tests/store/crash_writer.py DB [normal|strict]`; the test kill -9s it.
"""

from __future__ import annotations

import asyncio
import sys
import time

from edge.model import Reading
from edge.store.journal import Journal


async def main(path: str, durability: str) -> None:
    journal = Journal(path, durability=durability, flush_interval=0.005, flush_max_items=2000).open()
    points = [f"meter-{i % 40}.p{i % 25}" for i in range(500)]
    i = 0
    while True:
        now = time.time()
        journal.append([Reading(now, p, float(i + k), 0) for k, p in enumerate(points)])
        i += 1
        # drivers yield to the loop between polls; keep the queue bounded like a real ingest
        await asyncio.sleep(0.001 if journal.pending > 20_000 else 0)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "normal"))
