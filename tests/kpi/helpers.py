"""A site clock that runs many times faster than the wall clock, and an event loop that keeps
time with it, so a test lives hours of a site in seconds.

The simulator schedules its samples on the event loop's time and stamps them with the runtime's
clock; both run `speed` times faster here. The clock can be frozen (a gateway stop takes no site
time of its own) and jumped (the gateway stays down for a known time).
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from edge.clock import ClockSample

T = TypeVar("T")


class FastClock:
    def __init__(self, start: float, speed: float) -> None:
        self.speed = speed
        self._origin = time.monotonic()
        self._start = start
        self._frozen: float | None = None

    def __call__(self) -> float:
        if self._frozen is not None:
            return self._frozen
        return self._start + (time.monotonic() - self._origin) * self.speed

    def sample(self) -> ClockSample:
        """The runtime's (wall, monotonic) source: the site's time is the only time here, so the
        clock never steps against itself (a stop with a known downtime is no step either)."""
        now = self()
        return ClockSample(now, now)

    def freeze(self) -> float:
        self._frozen = self()
        return self._frozen

    def resume(self, jump: float = 0.0) -> float:
        """Run on from the frozen time plus `jump` seconds."""
        assert self._frozen is not None
        self._start = self._frozen + jump
        self._origin = time.monotonic()
        self._frozen = None
        return self()


class _ScaledSelector:
    """The loop's selector with its timeout turned from site seconds back into real ones."""

    def __init__(self, inner: selectors.BaseSelector, speed: float) -> None:
        self._inner = inner
        self._speed = speed

    def select(self, timeout: float | None = None) -> Any:
        return self._inner.select(None if timeout is None else timeout / self._speed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FastLoop(asyncio.SelectorEventLoop):
    """An event loop whose `time()` runs `speed` times faster than the monotonic clock."""

    def __init__(self, speed: float) -> None:
        super().__init__()
        self._speed = speed
        self._selector = _ScaledSelector(self._selector, speed)  # type: ignore[has-type,assignment,arg-type]

    def time(self) -> float:
        return time.monotonic() * self._speed


def run_fast(coro: Coroutine[Any, Any, T], speed: float) -> T:
    loop = FastLoop(speed)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
