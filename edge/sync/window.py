"""A push sink's in-flight window: the batches it has launched and its cursor has not yet passed.

With `max_in_flight: N` up to N batches (consecutive seq ranges) are sent at once and may be
answered in any order, but the cursor only moves over the contiguous prefix of batches that are
delivered or dead-lettered, so a crash replays at most the N batches of the window.

When a batch fails with a retryable error the sink must not hammer the receiver with N retries:
`Recovery` runs one shared backoff, then lets the failed batches through one at a time in seq
order (the first one probes the receiver) until one gets an answer; then the others retry
together and new batches are launched again. With N = 1 this is exactly the classic loop:
fail, back off, retry the same batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


class Signal:
    """Wakes everyone waiting for some state to change; each waiter re-checks its own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._event.wait()


@dataclass
class Slot:
    """One launched batch: seq range first..last, delivered (or dead-lettered) up to `upto`."""

    first: int
    last: int
    upto: int

    @property
    def done(self) -> bool:
        return self.upto >= self.last


class Window:
    """The launched batches in seq order; `passed` is how far the cursor may move."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.slots: deque[Slot] = deque()

    def open(self, first: int, last: int) -> Slot:
        slot = Slot(first, last, first - 1)
        self.slots.append(slot)
        return slot

    @property
    def full(self) -> bool:
        return len(self.slots) >= self.size

    @property
    def in_flight(self) -> int:
        return sum(1 for slot in self.slots if not slot.done)

    def passed(self, cursor: int) -> int:
        """Drop the finished batches at the head; the new cursor: the end of the contiguous
        prefix that is delivered (a bisected batch at the head counts up to where it got)."""
        while self.slots and self.slots[0].done:
            cursor = max(cursor, self.slots.popleft().last)
        if self.slots:
            cursor = max(cursor, self.slots[0].upto)
        return cursor


class Recovery:
    """One shared backoff for all batches of a sink that failed with a retryable error."""

    def __init__(self, signal: Signal) -> None:
        self.signal = signal
        self.waiting: set[int] = set()  # first seqs of failed batches waiting for their turn
        self.probe: int | None = None  # the batch retrying alone after the backoff
        self.backing_off = False

    @property
    def active(self) -> bool:
        """True from a retryable failure until a retry gets an answer: launch nothing new."""
        return bool(self.waiting) or self.probe is not None or self.backing_off

    async def wait_turn(self, key: int, backoff: Callable[[], Awaitable[None]]) -> None:
        """After a retryable failure of batch `key`: return when it may be sent again. The first
        failure (or a failed probe) runs `backoff`; the others wait for the same one."""
        if self.probe == key:
            self.probe = None
        self.waiting.add(key)
        self.signal.fire()
        if not self.backing_off and self.probe is None:
            self.backing_off = True
            try:
                await backoff()
            finally:
                self.backing_off = False
                if self.waiting:  # the lowest seq goes first, alone
                    self.probe = min(self.waiting)
                    self.waiting.discard(self.probe)
                self.signal.fire()
        await self.signal.until(lambda: key not in self.waiting)

    def answered(self, key: int) -> None:
        """Batch `key` got a non-retryable answer (delivered, or rejected as content): if it was
        the probe, the receiver is back; release every waiting batch."""
        if self.probe == key:
            self.probe = None
            self.waiting.clear()
            self.signal.fire()


#: the batch a sink starts with (and never goes below, unless `batch.max_items` is smaller)
START_ITEMS = 5000
#: grown until the round trip's fixed part is at most this share of a request's time
FIXED_SHARE = 0.2
SAMPLES = 24  # recent successful requests the fit looks at


class BatchSizer:
    """How many records go into the next batch, sized by the link.

    A request's time is modelled as `a + b * n`: `a` the fixed part of a round trip (the link's
    latency and the receiver's per-request work), `b` the cost per record. With one batch in
    flight a backlog drains at `n / (a + b * n)`, so a link whose round trip dominates wants big
    batches. From recent successful requests (the fastest one per size class, since load on the
    gateway only adds time) the sizer fits `a` and `b` and aims at the size where `a` is at most
    FIXED_SHARE of a request: `n = a * (1 - s) / (s * b)`.

    It starts at START_ITEMS; until two size classes have been answered it doubles each batch it
    builds (a slow start, so the fit has sizes to compare after two answers); then it moves at
    most 4x up or 2x down per answer, ignores changes under a quarter (load on a shared machine
    makes single requests noisy), and never leaves [START_ITEMS, `max_items`], the bytes cap (by
    the recent encoded bytes per record) or a quarter of the request timeout. A timeout halves it.
    """

    def __init__(self, max_items: int, max_bytes: int, timeout: float) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.floor = min(START_ITEMS, max_items)
        self.items = self.floor
        self.fitted = False
        self.samples: deque[tuple[int, float]] = deque(maxlen=SAMPLES)

    def size(self, bytes_per_item: float) -> int:
        """The size a batch has now (when to send one, how much a read takes)."""
        by_bytes = int(self.max_bytes / max(1.0, bytes_per_item))
        return max(1, min(self.items, self.max_items, by_bytes))

    def take(self, bytes_per_item: float) -> int:
        """The size of the batch about to be built; while learning, the next one is twice it."""
        n = self.size(bytes_per_item)
        if not self.fitted:
            self.items = min(self.max_items, max(self.items, n * 2))
        return n

    def observe(self, items: int, seconds: float) -> None:
        """A batch of `items` records (seq range) was delivered in `seconds` (a live tail's
        smaller batch still teaches the fixed part)."""
        if items <= 0 or seconds <= 0:
            return
        self.samples.append((items, seconds))
        fastest: dict[int, tuple[int, float]] = {}
        for n, d in self.samples:
            key = n.bit_length()
            if key not in fastest or d / n < fastest[key][1] / fastest[key][0]:
                fastest[key] = (n, d)
        points = list(fastest.values())
        if len(points) < 2 or max(n for n, _ in points) < self.floor // 2:
            # one size, or only a live tail's small batches: nothing to tell a backlog's size by
            self.fitted = False
            return
        self.fitted = True
        mean_n = sum(n for n, _ in points) / len(points)
        mean_d = sum(d for _, d in points) / len(points)
        var = sum((n - mean_n) ** 2 for n, _ in points)
        b = sum((n - mean_n) * (d - mean_d) for n, d in points) / var
        a = mean_d - b * mean_n
        if b <= 0:  # the time does not grow with the size: the round trip is all of it
            target = float(self.max_items)
        elif a <= 0:  # no fixed part to amortise
            target = float(self.floor)
        else:
            target = a * (1 - FIXED_SHARE) / (FIXED_SHARE * b)
            target = min(target, (self.timeout / 4 - a) / b)
        target = max(self.floor, min(self.max_items, target))
        if target > 1.25 * self.items:
            self.items = int(min(target, self.items * 4))
        elif target < 0.75 * self.items:
            self.items = int(max(target, self.items / 2))

    def timed_out(self) -> None:
        """A request ran into the timeout: perhaps the batch is too big for the link."""
        self.items = max(1, self.items // 2)
        self.samples.clear()
        self.fitted = True  # no slow start again until the next answers
