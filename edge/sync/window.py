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
