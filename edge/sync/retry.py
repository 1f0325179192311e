"""What one send attempt came back with, how long to wait after it, and the per-host link board.

A server's answer and a link failure are told apart: `Retry-After` is the server's floor on the
next attempt, which nothing shortens; "the link is back" (another sink's success to the same host,
a TCP probe) only ends the wait of a sink whose last attempt got no answer at all.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import time
from dataclasses import dataclass


@dataclass
class Outcome:
    status: int | None  # None: no HTTP answer (connect error, reset, timeout)
    error: str = ""
    retry_after: float | None = None
    body: str = ""
    connect_failed: bool = False  # could not even connect: the link (or the receiver) is down
    elapsed: float = 0.0  # seconds from sending the request to the whole answer

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def link_failed(self) -> bool:
        """No answer from the server (connect error, DNS, timeout, reset): the link may be down,
        so the link coming back is a reason to try again early."""
        return self.status is None

    @property
    def poison(self) -> bool:
        """A rejection of the content itself: bisect it (401/403/404/408/429 are not)."""
        return (
            self.status is not None
            and 400 <= self.status < 500
            and self.status not in (401, 403, 404, 408, 429)
        )


#: the longest `Retry-After` taken as given: a server asking for more (a typo, a bogus date) is
#: retried after a day rather than never
MAX_RETRY_AFTER = 86_400.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or an HTTP-date); None when
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(MAX_RETRY_AFTER, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT even when the zone is left off
        when = when.replace(tzinfo=datetime.UTC)
    return min(MAX_RETRY_AFTER, max(0.0, when.timestamp() - time.time()))


class LinkBoard:
    """Shared by the sinks of one runtime: a success to a host wakes the sinks waiting on it
    because their last attempt got no answer (only those register in `waiters`)."""

    def __init__(self) -> None:
        self.waiters: dict[str, set[asyncio.Event]] = {}

    def link_up(self, host: str, but: asyncio.Event | None = None) -> None:
        """A request to `host` succeeded: end the backoff of every sink waiting for the link to
        it (except `but`, the caller's own: its batches in flight were sent before it failed)."""
        for ev in self.waiters.get(host, ()):
            if ev is not but:
                ev.set()
