"""How the CLI writes counts, durations, times and values for people: one place, so every command
reads the same ("1 device", "2 devices"; "8 d 13 h"; "2026-12-06 16:34:00 +08:00"; 1744.71).

The web UI has its own formatting (format.js) for both of its languages; the CLI speaks English.
Machine output (`--json`) never goes through here: it keeps raw seconds and epoch timestamps.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo

SIGNIFICANT = 7  # a float32 carries about 7 significant decimal digits: more are noise

_IRREGULAR = {"entry": "entries", "policy": "policies", "key": "keys", "day": "days"}


def plural(noun: str) -> str:
    """`noun`'s plural for the nouns the commands count ("device" → "devices",
    "entry" → "entries"); the last word of a phrase is the one that changes."""
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR:
        word = _IRREGULAR[last]
    elif last.endswith(("s", "x", "sh", "ch")):
        word = last + "es"
    elif last.endswith("y") and last[-2:-1] not in ("a", "e", "i", "o", "u"):
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def count(n: int, noun: str, many: str | None = None) -> str:
    """`n` and the noun in the number it takes: "1 device", "0 devices", "1,204 readings"."""
    return f"{n:,} {noun if n == 1 else many or plural(noun)}"


_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration(seconds: float, parts: int = 2) -> str:
    """A length of time in its `parts` largest units, rounded to the last one shown: "8 d 13 h"
    (738,183 s), "5 min 3 s", "42 s", "350 ms"; a zero last part is left out ("1 d", not "1 d 0 h")."""
    if seconds < 0 or math.isnan(seconds):
        return "-" + duration(-seconds, parts) if seconds < 0 else "?"
    if seconds < 1:
        return f"{round(seconds * 1000)} ms" if seconds > 0 else "0 s"
    shown = [(u, size) for u, size in _UNITS if seconds >= size][:parts]
    last = shown[-1][1]
    left = round(seconds / last) * last
    out: list[tuple[int, str]] = []
    for unit, size in _UNITS:
        if size < last:
            break
        n, left = divmod(left, size)
        if n or out:
            out.append((int(n), unit))
    while len(out) > 1 and out[-1][0] == 0:
        out.pop()
    return " ".join(f"{n} {unit}" for n, unit in out[:parts])


def ago(seconds: float) -> str:
    """How long ago: "3 min ago", "just now" under a second."""
    return "just now" if 0 <= seconds < 1 else f"{duration(seconds)} ago"


def zone(name: str | None) -> dt.tzinfo:
    """The site's time zone (`site.timezone`), UTC when unnamed or unknown."""
    if not name:
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def timestamp(ts: float, tz: dt.tzinfo | str | None = None) -> str:
    """An epoch time in the site's zone, ISO-like and unambiguous: "2026-12-06 16:34:00 +08:00"."""
    zone_info = zone(tz) if tz is None or isinstance(tz, str) else tz
    t = dt.datetime.fromtimestamp(ts, zone_info)
    offset = t.strftime("%z")
    return t.strftime("%Y-%m-%d %H:%M:%S ") + f"{offset[:3]}:{offset[3:]}"


def number(value: object, precision: int | None = None) -> str:
    """A reading for people: a float rounded to `precision` decimals (the point's, when declared)
    or else to SIGNIFICANT significant digits, without trailing zeros: 1744.71015625 → "1744.71"
    (a float32 read as 1744.7101 — the digits after the seventh are the float's, not the meter's).
    Integers, booleans and text are shown as they are."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if precision is None:
        if value == 0:
            return "0"
        magnitude = math.floor(math.log10(abs(value))) + 1
        if magnitude > SIGNIFICANT + 3 or magnitude < -5:
            return f"{value:.{SIGNIFICANT}g}"
        precision = max(0, SIGNIFICANT - magnitude)
    text = f"{round(value, precision):.{max(0, precision)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
