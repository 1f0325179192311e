"""The CLI's formatting (`edge.fmt`): counts in the right number, durations in their two largest
units, times in the site's zone with its offset, float32 noise rounded away."""

from __future__ import annotations

import struct

import pytest

from edge import fmt


@pytest.mark.parametrize(
    ("n", "noun", "text"),
    [
        (1, "device", "1 device"),
        (0, "upstream sink", "0 upstream sinks"),
        (2, "pull consumer", "2 pull consumers"),
        (1204, "reading", "1,204 readings"),
        (3, "entry", "3 entries"),
        (2, "policy", "2 policies"),
        (2, "day", "2 days"),
        (2, "box", "2 boxes"),
    ],
)
def test_counts_take_the_number_of_their_count(n: int, noun: str, text: str) -> None:
    assert fmt.count(n, noun) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (738183, "8 d 13 h"),
        (0.35, "350 ms"),
        (0, "0 s"),
        (42, "42 s"),
        (303, "5 min 3 s"),
        (3600, "1 h"),
        (86399.6, "1 d"),
        (90061, "1 d 1 h"),
        (59.6, "1 min"),
        (-90, "-1 min 30 s"),
    ],
)
def test_durations_read_in_their_two_largest_units(seconds: float, text: str) -> None:
    assert fmt.duration(seconds) == text


def test_ago_and_timestamps_in_the_site_zone() -> None:
    assert fmt.ago(0.2) == "just now" and fmt.ago(190) == "3 min 10 s ago"
    assert fmt.timestamp(1_765_000_000, "Asia/Shanghai") == "2025-12-06 13:46:40 +08:00"
    assert fmt.timestamp(1_765_000_000, "UTC") == "2025-12-06 05:46:40 +00:00"
    assert fmt.timestamp(1_765_000_000, "No/Such_Zone") == "2025-12-06 05:46:40 +00:00"
    assert fmt.timestamp(1_751_328_000, "Europe/Berlin").endswith("+02:00")  # summer time


def test_numbers_lose_their_float32_noise_and_keep_a_declared_precision() -> None:
    as_float32 = struct.unpack("<f", struct.pack("<f", 1744.71))[0]  # 1744.7099609375
    assert fmt.number(as_float32) == "1744.71" and fmt.number(1744.71015625) == "1744.71"
    assert fmt.number(22443.858) == "22443.86"
    assert fmt.number(0.1 + 0.2) == "0.3"
    assert fmt.number(230.00000001) == "230"
    assert fmt.number(as_float32, 1) == "1744.7" and fmt.number(2.0, 2) == "2"
    assert fmt.number(12) == "12" and fmt.number(True) == "True" and fmt.number("open") == "open"
    assert fmt.number(1e-07) == "1e-07" and fmt.number(-0.0) == "0"
