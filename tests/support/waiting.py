"""Wait for a condition with a timeout (never a fixed sleep): the test goes on as soon as it holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class _Deadline:
    """The moment a wait gives up, failing with what it waited for."""

    def __init__(self, timeout: float, what: object) -> None:
        self.timeout = timeout
        self.what = what
        self.at = time.monotonic() + timeout

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise AssertionError(f"timed out after {self.timeout}s waiting for {self.what}")


async def until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> T:
    deadline = _Deadline(timeout, what or predicate)
    while not (value := predicate()):
        deadline.check()
        await asyncio.sleep(interval)
    return value


async def until_async(
    predicate: Callable[[], Awaitable[object]], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> None:
    """`until` for a predicate that must itself await (a flush, a query in a thread)."""
    deadline = _Deadline(timeout, what or predicate)
    while not await predicate():
        deadline.check()
        await asyncio.sleep(interval)


def until_sync(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    deadline = _Deadline(timeout, what or predicate)
    while not (value := predicate()):
        deadline.check()
        time.sleep(interval)
    return value
