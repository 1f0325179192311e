"""Five-field cron schedules (`min hour day-of-month month day-of-week`) in the site's timezone.

Fields take `*`, `N`, `A-B`, `*/S`, `A-B/S` and comma lists; day-of-week 0-7 (0 and 7 are
Sunday); `@hourly`, `@daily`, `@weekly`, `@monthly` are accepted. As in Vixie cron, when both
day fields are restricted a day matches either. `next_after` skips whole months/days/hours that
cannot match, so it stays cheap for sparse schedules.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}
FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def _parse_field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_s = part.partition("/")
        try:
            step = int(step_s) if step_s else 1
            if rng == "*":
                a, b = lo, hi
            elif "-" in rng:
                a_s, b_s = rng.split("-", 1)
                a, b = int(a_s), int(b_s)
            else:
                a = b = int(rng)
                if step_s:
                    b = hi
        except ValueError:
            raise ValueError(f"cron {name} field {text!r}: use *, N, A-B, */S or lists") from None
        if step < 1 or not (lo <= a <= hi and lo <= b <= hi and a <= b):
            raise ValueError(f"cron {name} field {text!r}: values must be within {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


class Cron:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        text = ALIASES.get(expr.strip(), expr.strip())
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(
                f"schedule {expr!r} needs 5 fields: minute hour day-of-month month day-of-week "
                "(e.g. '0 3 * * *'), or @hourly/@daily/@weekly/@monthly"
            )
        sets = [_parse_field(p, *f) for p, f in zip(parts, FIELDS, strict=True)]
        self.minutes, self.hours, self.days, self.months, dows = sets
        self.dows = frozenset(d % 7 for d in dows)
        self.dom_any = parts[2] == "*"
        self.dow_any = parts[4] == "*"

    def _day_ok(self, d: dt.datetime) -> bool:
        dow = (d.weekday() + 1) % 7  # cron: Sunday = 0
        if self.dom_any and self.dow_any:
            return True
        if self.dom_any:
            return dow in self.dows
        if self.dow_any:
            return d.day in self.days
        return d.day in self.days or dow in self.dows

    def next_after(self, ts: float, tz: dt.tzinfo) -> float:
        """The first matching minute strictly after `ts` (UTC epoch), as UTC epoch."""
        t = dt.datetime.fromtimestamp(ts, tz).replace(tzinfo=None, second=0, microsecond=0)
        t += dt.timedelta(minutes=1)
        for _ in range(100_000):
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
                continue
            if not self._day_ok(t):
                t = t.replace(hour=0, minute=0) + dt.timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += dt.timedelta(minutes=1)
                continue
            return t.replace(tzinfo=tz).timestamp()
        raise ValueError(f"schedule {self.expr!r} never matches")


def site_tz(name: str | None) -> dt.tzinfo:
    return zoneinfo.ZoneInfo(name) if name else dt.UTC
