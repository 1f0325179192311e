"""Durations (`500ms`, `5s`, `2m`, `1h30m`, `7d`) and sizes (`512MiB`, `4GiB`, `10MB`) as config types."""

from __future__ import annotations

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
            return total
        if pos:  # a valid start and something after it: say which part is not understood
            raise ValueError(
                f"{bad} ({text[pos:].strip()!r} after {text[:pos].strip()!r} has no number or unit)"
            )
    raise ValueError(bad)


def parse_size(value: object) -> int:
    """Bytes from `4GiB`, `500MB`, `64k`, or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}; expected e.g. 512MiB, 4GiB, 100MB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, float) and value >= 0:
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise ValueError(f"invalid size {value!r}; expected e.g. 512MiB, 4GiB, 100MB (or bytes)")


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
