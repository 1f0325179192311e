"""Sliding time windows over one point's readings, kept incrementally.

Each window holds the (ts, value) samples of the last `seconds`, by reading timestamp, sorted by
timestamp. The window ends at the latest time it has seen: its newest reading's or the latest
evaluation's that read it, whichever is later; a sample older than that end minus `seconds` is
outside it. Readings normally arrive in timestamp order: each is appended and the oldest evicted, a
running sum is updated, and min/max use monotonic deques, so every query is O(1) amortised. A
reading older than the newest one held (a clock stepped back, two drivers' readings crossing) takes
a slower path: it is inserted in its place, and the monotonic deques are patched around it. An
empty window answers NaN (comparisons with NaN are false), count answers 0.

Memory is bounded: a window holds at most MAX_RAW_SAMPLES samples one by one (about 2.2 MB at
SAMPLE_BYTES each). Past that (a long window on a fast point: 31 days of a 50 ms point would be
53 million samples, 6 GB) it is downsampled, once, into BUCKETS buckets of `seconds / BUCKETS`
each (first, last, count, sum, min, max of the samples in it; about 0.3 MB). From then on its sum,
count and avg are those of whole buckets, min and max the extremes of whole buckets, delta and rate
between the first sample of the oldest bucket and the newest sample: exact for the samples the
buckets hold, which may reach back up to one bucket (1/BUCKETS of the span) before the window's
start, as a bucket leaves the window only when all of it is older than the span. A downsampled
window says so (`coarse`); the engine counts them (`windows_downsampled`).
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

MAX_RAW_SAMPLES = 20_000  # samples a window holds one by one; past it, it is downsampled
BUCKETS = 1_000  # buckets a downsampled window's span is cut into
SAMPLE_BYTES = 112  # memory of one raw sample: its tuple, two floats, deque slots (measured)
BUCKET_BYTES = 300  # memory of one bucket: its list and six floats, deque slots
#: the most memory one window takes, however fast its point reports
WINDOW_BYTES = MAX_RAW_SAMPLES * SAMPLE_BYTES


#: the reading interval assumed of a point whose interval the site file does not give
DEFAULT_INTERVAL = 1.0


def expected_bytes(seconds: float, interval: float | None) -> int:
    """Memory a window of `seconds` over a point read every `interval` seconds (DEFAULT_INTERVAL
    when not known) takes when full, at most WINDOW_BYTES (the bound)."""
    if not interval or interval <= 0:
        interval = DEFAULT_INTERVAL
    return min(WINDOW_BYTES, math.ceil(seconds / interval + 1) * SAMPLE_BYTES)


class _Buckets:
    """A downsampled window's samples: buckets [index, first ts, first value, last ts, last
    value, count, sum, min, max] by index (ts // width), and monotonic deques of (index, extreme)
    over them for min and max."""

    __slots__ = ("buckets", "maxq", "minq", "n", "sum", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self.buckets: deque[list[float]] = deque()
        self.n = 0
        self.sum = 0.0
        self.minq: deque[tuple[float, float]] = deque()
        self.maxq: deque[tuple[float, float]] = deque()

    def add(self, ts: float, v: float) -> None:
        k = float(ts // self.width)
        b = self.buckets
        self.n += 1
        self.sum += v
        if b and b[-1][0] == k:
            bucket = b[-1]
        elif not b or b[-1][0] < k:
            b.append([k, ts, v, ts, v, 0, 0.0, v, v])
            bucket = b[-1]
        else:  # an older bucket (a reading out of order): found by search, extremes rebuilt
            i = bisect.bisect_left(b, k, key=_ts)
            if i == len(b) or b[i][0] != k:
                b.insert(i, [k, ts, v, ts, v, 0, 0.0, v, v])
            _fold(b[i], ts, v)
            self._rebuild()
            return
        _fold(bucket, ts, v)
        minq, maxq = self.minq, self.maxq
        while minq and minq[-1][1] >= v:
            minq.pop()
        if not minq or minq[-1][0] != k:
            minq.append((k, bucket[7]))
        while maxq and maxq[-1][1] <= v:
            maxq.pop()
        if not maxq or maxq[-1][0] != k:
            maxq.append((k, bucket[8]))

    def _rebuild(self) -> None:
        self.minq.clear()
        self.maxq.clear()
        for bucket in self.buckets:
            k, mn, mx = bucket[0], bucket[7], bucket[8]
            while self.minq and self.minq[-1][1] >= mn:
                self.minq.pop()
            self.minq.append((k, mn))
            while self.maxq and self.maxq[-1][1] <= mx:
                self.maxq.pop()
            self.maxq.append((k, mx))

    def evict(self, horizon: float) -> None:
        b = self.buckets
        while b and b[0][3] < horizon:  # all of the bucket is older than the span
            gone = b.popleft()
            self.n -= int(gone[5])
            self.sum -= gone[6]
        first = b[0][0] if b else math.inf
        while self.minq and self.minq[0][0] < first:
            self.minq.popleft()
        while self.maxq and self.maxq[0][0] < first:
            self.maxq.popleft()
        if not b:
            self.sum, self.n = 0.0, 0


def _fold(bucket: list[float], ts: float, v: float) -> None:
    if ts < bucket[1]:
        bucket[1], bucket[2] = ts, v
    if ts >= bucket[3]:
        bucket[3], bucket[4] = ts, v
    bucket[5] += 1
    bucket[6] += v
    if v < bucket[7]:
        bucket[7] = v
    if v > bucket[8]:
        bucket[8] = v


class Window:
    __slots__ = ("_coarse", "_horizon", "_maxq", "_minq", "_sum", "samples", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.samples: deque[tuple[float, float]] = deque()  # sorted by ts
        self._sum = 0.0
        self._minq: deque[tuple[float, float]] = deque()  # by ts; increasing values
        self._maxq: deque[tuple[float, float]] = deque()  # by ts; decreasing values
        # the window's end minus `seconds`: every sample held is at or after it, and it never
        # moves back
        self._horizon = -math.inf
        self._coarse: _Buckets | None = None  # downsampled (see the module docstring)

    @property
    def coarse(self) -> bool:
        """Whether the window is downsampled into buckets (see the module docstring)."""
        return self._coarse is not None

    def memory(self) -> int:
        """About the bytes the window's samples take."""
        if self._coarse is not None:
            return len(self._coarse.buckets) * BUCKET_BYTES
        return len(self.samples) * SAMPLE_BYTES

    def empty(self) -> bool:
        return not self.samples and (self._coarse is None or not self._coarse.buckets)

    def _downsample(self) -> None:
        coarse = _Buckets(self.seconds / BUCKETS)
        for ts, v in self.samples:
            coarse.add(ts, v)
        self._coarse = coarse
        self.samples = deque()
        self._minq, self._maxq, self._sum = deque(), deque(), 0.0

    def _add_coarse(self, coarse: _Buckets, ts: float, value: float) -> None:
        if ts < self._horizon:
            return
        coarse.add(ts, value)
        horizon = ts - self.seconds
        if horizon > self._horizon:
            self._horizon = horizon
            coarse.evict(horizon)

    def add(self, ts: float, value: float) -> None:
        if self._coarse is not None:
            self._add_coarse(self._coarse, ts, value)
            return
        samples = self.samples
        if len(samples) >= MAX_RAW_SAMPLES:
            self.evict(ts)
            if len(samples) >= MAX_RAW_SAMPLES:
                self._downsample()
                self.add(ts, value)
                return
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
        if self._coarse is not None:
            self._coarse.evict(horizon)
            return
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
        costs the event loop nothing. The window's end is the later of the two windows' ends.
        A downsampled live window keeps what it holds (it saw MAX_RAW_SAMPLES readings since it
        was created); a downsampled history is taken whole, with the live samples newer than it."""
        if self._coarse is not None:
            return
        if history._coarse is not None:
            newest = history._coarse.buckets[-1][3] if history._coarse.buckets else -math.inf
            live_end = self._horizon + self.seconds
            fresh = [s for s in self.samples if s[0] > newest]
            self.samples, self._minq, self._maxq, self._sum = deque(), deque(), deque(), 0.0
            self._coarse, self._horizon = history._coarse, history._horizon
            for ts, v in fresh:
                self.add(ts, v)
            self.evict(live_end)
            return
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
        if self._coarse is not None:
            return self._coarse.sum / self._coarse.n if self._coarse.n else NAN
        n = len(self.samples)
        return self._sum / n if n else NAN

    def sum(self, now: float) -> float:
        self.evict(now)
        if self._coarse is not None:
            return self._coarse.sum if self._coarse.n else NAN
        return self._sum if self.samples else NAN

    def count(self, now: float) -> int:
        self.evict(now)
        if self._coarse is not None:
            return self._coarse.n
        return len(self.samples)

    def min(self, now: float) -> float:
        self.evict(now)
        q = self._minq if self._coarse is None else self._coarse.minq
        return q[0][1] if q else NAN

    def max(self, now: float) -> float:
        self.evict(now)
        q = self._maxq if self._coarse is None else self._coarse.maxq
        return q[0][1] if q else NAN

    def _ends(self) -> tuple[int, float, float, float, float]:
        """(samples, first ts, first value, last ts, last value)."""
        if self._coarse is not None:
            b = self._coarse.buckets
            if not b:
                return 0, NAN, NAN, NAN, NAN
            return self._coarse.n, b[0][1], b[0][2], b[-1][3], b[-1][4]
        s = self.samples
        if not s:
            return 0, NAN, NAN, NAN, NAN
        return len(s), s[0][0], s[0][1], s[-1][0], s[-1][1]

    def delta(self, now: float) -> float:
        """Last value minus first value in the window (e.g. kWh consumed by a counter)."""
        self.evict(now)
        n, _, first, _, last = self._ends()
        return last - first if n >= 2 else NAN

    def rate(self, now: float) -> float:
        """Change per second between the first and last sample in the window."""
        self.evict(now)
        n, t0, first, t1, last = self._ends()
        if n < 2 or t1 <= t0:
            return NAN
        return (last - first) / (t1 - t0)


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
