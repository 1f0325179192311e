"""Sliding time windows over one point's readings, kept incrementally.

Each window holds the (ts, value) samples of the last `seconds`, by reading timestamp, sorted by
timestamp. The window ends at the latest time it has seen: its newest reading's or the latest
evaluation's that read it, whichever is later; a sample older than that end minus `seconds` is
outside it. Readings normally arrive in timestamp order: each is appended and the oldest evicted, a
running sum is updated, and min/max use monotonic deques, so every query is O(1) amortised. A
reading older than the newest one held (a clock stepped back, two drivers' readings crossing) takes
a slower path: it is inserted in its place, and the monotonic deques are patched around it. An
empty window answers NaN (comparisons with NaN are false), count answers 0.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable
from operator import itemgetter

NAN = math.nan
_ts = itemgetter(0)


class Window:
    __slots__ = ("_horizon", "_maxq", "_minq", "_sum", "samples", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.samples: deque[tuple[float, float]] = deque()  # sorted by ts
        self._sum = 0.0
        self._minq: deque[tuple[float, float]] = deque()  # by ts; increasing values
        self._maxq: deque[tuple[float, float]] = deque()  # by ts; decreasing values
        # the window's end minus `seconds`: every sample held is at or after it, and it never
        # moves back
        self._horizon = -math.inf

    def add(self, ts: float, value: float) -> None:
        samples = self.samples
        if samples and ts < samples[-1][0]:
            self._insert(ts, value)
            return
        if ts < self._horizon:
            return  # older than the window's span (an evaluation at a later time moved its end)
        samples.append((ts, value))
        self._sum += value
        minq, maxq = self._minq, self._maxq
        while minq and minq[-1][1] >= value:
            minq.pop()
        minq.append((ts, value))
        while maxq and maxq[-1][1] <= value:
            maxq.pop()
        maxq.append((ts, value))
        # evict, inline: the new sample stays (it is at or after the horizon), so no queue empties
        horizon = ts - self.seconds
        if horizon > self._horizon:
            self._horizon = horizon
            while samples[0][0] < horizon:
                self._sum -= samples.popleft()[1]
            while minq[0][0] < horizon:
                minq.popleft()
            while maxq[0][0] < horizon:
                maxq.popleft()

    def _insert(self, ts: float, value: float) -> None:
        """A reading older than the newest sample: put in its place by time (after samples of the
        same time), unless it is older than the window's span. Costs a search and a few moves of
        the samples after it, not a rebuild of the window."""
        if ts < self._horizon:
            return
        sample = (ts, value)
        samples = self.samples
        samples.insert(bisect.bisect_right(samples, ts, key=_ts), sample)
        self._sum += value
        # min deque: a sample stays in it while every later sample's value is greater
        _patch(self._minq, sample, lambda a, b: a < b)
        _patch(self._maxq, sample, lambda a, b: a > b)

    def evict(self, now: float) -> None:
        horizon = now - self.seconds
        if horizon <= self._horizon:
            return  # the window's end has not moved: nothing held is older than it
        self._horizon = horizon
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

        The live samples are a suffix of the point's journaled readings, and `history` a prefix of
        them (up to the seq the back-fill read to), so the two share at most the readings journaled
        while the back-fill read; a live sample is one of those when `history` holds the same
        (ts, value) not yet matched to another live sample. O(live samples + history samples at or
        after the oldest live one) on top of a swap of `history`'s structures, so a long history
        costs the event loop nothing. The window's end is the later of the two windows' ends."""
        live = list(self.samples)  # sorted by ts
        live_end = self._horizon + self.seconds
        kept = live
        if live and history.samples:
            # the shared readings are among history's samples at or after the oldest live one
            lo = live[0][0]
            shared = Counter(itertools.takewhile(lambda s: s[0] >= lo, reversed(history.samples)))
            kept = []
            for s in live:
                if shared[s]:
                    shared[s] -= 1
                else:
                    kept.append(s)
        self.samples, self._sum = history.samples, history._sum
        self._minq, self._maxq = history._minq, history._maxq
        self._horizon = history._horizon
        for ts, v in kept:
            self.add(ts, v)
        self.evict(live_end)

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


def _patch(
    q: deque[tuple[float, float]], sample: tuple[float, float], keeps: Callable[[float, float], bool]
) -> None:
    """Put `sample`, inserted out of order in the samples, into the monotonic deque `q` (sorted by
    ts; a sample is in it while `keeps(its value, v)` holds for every later sample's value v).
    It joins when it keeps over the first entry after it (the extreme of the later samples); then
    the entries before it that it does not keep over leave (a tail of the entries before it, as
    the values are monotonic)."""
    ts, value = sample
    k = bisect.bisect_right(q, ts, key=_ts)
    if k < len(q) and not keeps(value, q[k][1]):
        return
    j = k
    while j > 0 and not keeps(q[j - 1][1], value):
        j -= 1
    for _ in range(k - j):
        del q[j]
    q.insert(j, sample)
