"""Durations (`500ms`, `5s`, `2m`, `1h30m`, `7d`) and sizes (`512MiB`, `4GiB`, `10MB`) as config types."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
#: the largest size accepted: what SQLite and the file system count bytes in (a signed 64-bit int)
MAX_SIZE = 2**63 - 1


_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)(?![a-z])")
DURATION_EXAMPLES = "500ms, 5s, 2m, 1h30m, 7d"


def parse_duration(value: object) -> float:
    """Seconds from `5s`, `5 s`, `500ms`, `1h30m`, `1h 30m`, or a plain number of seconds.

    A space may separate a number from its unit and one part from the next, never the letters of
    a unit: `5 m s` is refused rather than read as 5 ms, as is anything else that is not parts
    of a number and a unit (ms, s, m, h, d, w)."""
    bad = f"invalid duration {value!r}; expected e.g. {DURATION_EXAMPLES}"
    if isinstance(value, bool):
        raise ValueError(bad)
    if isinstance(value, int | float):
        if not _finite(value):  # .nan or .inf: a timer that never fires, or fires at once
            raise ValueError(f"a duration must be a finite number of seconds (got {_shown(value)})")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        pos = 0
        total = 0.0
        while pos < len(text) and (m := _DURATION_PART.match(text, pos)):
            total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        if text and pos == len(text):
            if not math.isfinite(total):  # digits past what a float holds
                raise ValueError(
                    f"duration {_shown(value)} is too long; a duration must be a finite number of seconds"
                )
            return total
        if pos:  # a valid start and something after it: say which part is not understood
            raise ValueError(
                f"{bad} ({text[pos:].strip()!r} after {text[:pos].strip()!r} has no number or unit)"
            )
    raise ValueError(bad)


def _finite(value: float) -> bool:
    """`value` is a number a float holds (an int of 400 digits is not: isfinite raises on it)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def parse_size(value: object) -> int:
    """Bytes from `4GiB`, `500MB`, `64k`, or a plain number of bytes; at most MAX_SIZE."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}; expected e.g. 512MiB, 4GiB, 100MB")
    if isinstance(value, int | float):
        if not _finite(value):
            raise ValueError(f"a size must be a finite number of bytes (got {_shown(value)})")
        if value < 0:
            raise ValueError("a size cannot be negative")
        return _at_most_max(value, value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            # inf for digits past what a float holds, or once multiplied by the unit
            return _at_most_max(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()], value)
    raise ValueError(f"invalid size {value!r}; expected e.g. 512MiB, 4GiB, 100MB (or bytes)")


def _at_most_max(n: float, given: object) -> int:
    if not n <= MAX_SIZE:
        raise ValueError(
            f"size {_shown(given)} is too large; a size must be a finite number of bytes, "
            f"at most {MAX_SIZE:,} (8EiB)"
        )
    return int(n)


def _shown(value: object, most: int = 40) -> str:
    """`value` as an error quotes it, a long one cut short (a number of a thousand digits)."""
    text = repr(value)
    return text if len(text) <= most else text[: most - 1] + "…"


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
Size = Annotated[int, BeforeValidator(parse_size)]
