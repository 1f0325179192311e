"""Sliding time windows over one point's readings, kept incrementally.

Each window holds the (ts, value) samples of the last `seconds`, by reading timestamp. The running
sum is updated on append/evict, and min/max use monotonic deques, so every query is O(1)
amortised. An empty window answers NaN (comparisons with NaN are false), count answers 0.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

NAN = math.nan


class Window:
    __slots__ = ("_maxq", "_minq", "_sum", "samples", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.samples: deque[tuple[float, float]] = deque()
        self._sum = 0.0
        self._minq: deque[tuple[float, float]] = deque()  # increasing values
        self._maxq: deque[tuple[float, float]] = deque()  # decreasing values

    def add(self, ts: float, value: float) -> None:
        self.samples.append((ts, value))
        self._sum += value
        minq, maxq = self._minq, self._maxq
        while minq and minq[-1][1] >= value:
            minq.pop()
        minq.append((ts, value))
        while maxq and maxq[-1][1] <= value:
            maxq.pop()
        maxq.append((ts, value))
        self.evict(ts)

    def evict(self, now: float) -> None:
        horizon = now - self.seconds
        samples = self.samples
        while samples and samples[0][0] < horizon:
            _, v = samples.popleft()
            self._sum -= v
        while self._minq and self._minq[0][0] < horizon:
            self._minq.popleft()
        while self._maxq and self._maxq[0][0] < horizon:
            self._maxq.popleft()
        if not samples:
            self._sum = 0.0  # no float drift carried over an empty window

    def adopt(self, history: Window) -> None:
        """Take `history`'s samples (read from the journal) as this window's past, keeping the
        samples fed live since this window was created that `history` does not already hold.

        The live samples are a suffix of the point's journaled readings in journal order, and
        `history` a prefix of them (up to the seq the back-fill read to), so the two overlap in at
        most one run: history's tail equals the live head. O(len(live)) work on top of a swap of
        `history`'s structures, so a long history costs the event loop nothing."""
        live = list(self.samples)
        if live:
            tail = list(itertools.islice(reversed(history.samples), len(live)))[::-1]
            overlap = next((m for m in range(len(tail), 0, -1) if tail[len(tail) - m :] == live[:m]), 0)
            live = live[overlap:]
        self.samples, self._sum = history.samples, history._sum
        self._minq, self._maxq = history._minq, history._maxq
        for ts, v in live:
            self.add(ts, v)

    def avg(self, now: float) -> float:
        self.evict(now)
        n = len(self.samples)
        return self._sum / n if n else NAN

    def sum(self, now: float) -> float:
        self.evict(now)
        return self._sum if self.samples else NAN

    def count(self, now: float) -> int:
        self.evict(now)
        return len(self.samples)

    def min(self, now: float) -> float:
        self.evict(now)
        return self._minq[0][1] if self._minq else NAN

    def max(self, now: float) -> float:
        self.evict(now)
        return self._maxq[0][1] if self._maxq else NAN

    def delta(self, now: float) -> float:
        """Last value minus first value in the window (e.g. kWh consumed by a counter)."""
        self.evict(now)
        s = self.samples
        return s[-1][1] - s[0][1] if len(s) >= 2 else NAN

    def rate(self, now: float) -> float:
        """Change per second between the first and last sample in the window."""
        self.evict(now)
        s = self.samples
        if len(s) < 2 or s[-1][0] <= s[0][0]:
            return NAN
        return (s[-1][1] - s[0][1]) / (s[-1][0] - s[0][0])


class EmptyWindow:
    """What a window function sees for a point nobody has collected yet."""

    __slots__ = ()

    def avg(self, now: float) -> float:
        return NAN

    sum = min = max = delta = rate = avg

    def count(self, now: float) -> int:
        return 0


EMPTY = EmptyWindow()
