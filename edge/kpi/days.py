"""Days in the site's timezone: the key of a day, its bounds, and an interval cut at midnights."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator


class Days:
    """Local days of one timezone; each day is `YYYY-MM-DD` and spans [start, end) in UTC seconds
    (23 or 25 hours on a day a zone changes its offset)."""

    def __init__(self, timezone: str) -> None:
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.name = timezone
        self._cache: tuple[float, float, str] = (0.0, 0.0, "")

    def bounds_of(self, day: str) -> tuple[float, float]:
        d = dt.date.fromisoformat(day)
        nxt = d + dt.timedelta(days=1)
        start = dt.datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp()
        return start, dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=self.tz).timestamp()

    def at(self, ts: float) -> tuple[str, float, float]:
        """(day, start, end) of the day holding `ts`."""
        start, end, day = self._cache
        if start <= ts < end:
            return day, start, end
        day = dt.datetime.fromtimestamp(ts, self.tz).date().isoformat()
        start, end = self.bounds_of(day)
        self._cache = (start, end, day)
        return day, start, end

    def day_of(self, ts: float) -> str:
        return self.at(ts)[0]

    def split(self, a: float, b: float) -> Iterator[tuple[str, float]]:
        """(day, seconds) of the interval [a, b) cut at each local midnight."""
        while a < b:
            day, _start, end = self.at(a)
            cut = min(b, end)
            yield day, cut - a
            a = cut


def parse_day(text: str) -> str:
    """A day as `YYYY-MM-DD`; ValueError naming what was given."""
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"day {text!r}: expected YYYY-MM-DD, e.g. 2026-12-06") from None
