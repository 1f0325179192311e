"""What one send attempt came back with, how long to wait after it, and the per-host link board."""

from __future__ import annotations

import asyncio
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

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def poison(self) -> bool:
        """A rejection of the content itself: bisect it (401/403/404/408/429 are not)."""
        return (
            self.status is not None
            and 400 <= self.status < 500
            and self.status not in (401, 403, 404, 408, 429)
        )


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class LinkBoard:
    """Shared by the sinks of one runtime: a success to a host wakes every sink waiting on it."""

    def __init__(self) -> None:
        self.waiters: dict[str, set[asyncio.Event]] = {}

    def link_up(self, host: str, but: asyncio.Event | None = None) -> None:
        """A request to `host` succeeded: end the backoff of every sink waiting on it (except `but`,
        the caller's own: its batches in flight were sent before it failed)."""
        for ev in self.waiters.get(host, ()):
            if ev is not but:
                ev.set()
