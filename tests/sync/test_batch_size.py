"""Batches sized by the link: with default settings a backlog over a link whose round trip
dominates goes in bigger batches (still one at a time, in order), within `batch.max_items` and
`batch.max_bytes`; the sizing rule itself on request times that follow its model."""

from __future__ import annotations

from pathlib import Path

from edge.sync.window import FIXED_SHARE, START_ITEMS, BatchSizer
from tests.support.site import running_site
from tests.support.waiting import until
from tests.sync.test_pipelining import backlog, settled, slow_receiver


def default_sink(url: str, **extra: object) -> dict[str, object]:
    """A sink entry with the default batch and max_in_flight settings."""
    return {"id": "central", "type": "http", "url": url, **extra}


async def test_a_backlog_over_a_slow_link_goes_in_bigger_batches_in_order(tmp_path: Path) -> None:
    async with (
        slow_receiver(delay=0.2) as rx,
        running_site(tmp_path, {"upstream": [default_sink(rx.url)]}) as rt,
    ):
        s = rt.components["sync"].sinks["central"]
        b = await settled(rt, rx)
        committed = await backlog(rt, 80_000)
        await until(lambda: s.cursor >= committed, 60, what="the backlog to drain")
        sizes = [r.last - r.first + 1 for r in rx.requests]
        # one batch at a time, contiguous and in seq order, as with fixed batches
        assert rx.peak == 1 and all(r.status == 204 for r in rx.requests)
        assert [r.first for r in rx.requests] == [b + 1] + [r.last + 1 for r in rx.requests[:-1]]
        assert rx.requests[-1].last == committed
        # 0.2 s a round trip against well under a millisecond a record here: it grows
        assert sizes[0] == START_ITEMS and max(sizes) > 2 * START_ITEMS, sizes
        assert s.status()["batch_items"] > START_ITEMS


async def test_batches_stay_within_max_items_and_max_bytes(tmp_path: Path) -> None:
    cap = {"batch": {"max_items": 8000}}
    by_bytes = {"id": "small", "batch": {"max_bytes": "64KiB"}, "gzip_level": 0}
    async with (
        slow_receiver(delay=0.2) as rx,
        slow_receiver(delay=0.02) as rx_small,
        running_site(
            tmp_path,
            {"upstream": [default_sink(rx.url, **cap), default_sink(rx_small.url, **by_bytes)]},
        ) as rt,
    ):
        sinks = rt.components["sync"].sinks
        await settled(rt, rx)
        rx_small.reset()
        committed = await backlog(rt, 20_000)
        await until(
            lambda: all(s.cursor >= committed for s in sinks.values()), 60, what="both sinks to drain"
        )
        sizes = [r.last - r.first + 1 for r in rx.requests]
        assert max(sizes) == 8000 and sinks["central"].status()["batch_items"] == 8000, sizes
        # about 75 bytes a reading here: 64KiB holds under a thousand (the estimate of bytes a
        # record follows the batches, so the first may be off by its share)
        small = [r.last - r.first + 1 for r in rx_small.requests]
        per_row = sinks["small"].bytes_per_row
        assert max(small[1:]) * per_row <= 1.1 * 64 * 1024, (small, per_row)
        assert sinks["small"].status()["batch_items"] <= 64 * 1024 / per_row


def drive(sizer: BatchSizer, fixed: float, per_item: float, answers: int = 30) -> list[int]:
    """Answer `answers` full batches in the time the model says; the sizes asked for."""
    asked = []
    for _ in range(answers):
        n = sizer.take(100.0)
        asked.append(n)
        sizer.observe(n, fixed + per_item * n)
    return asked


def test_the_round_trip_decides_the_size() -> None:
    # 50 ms a round trip, 2 us a record: the fixed part is a fifth of a request at 100,000
    slow = BatchSizer(max_items=100_000, max_bytes=64 * 1024 * 1024, timeout=30.0)
    drive(slow, 0.05, 2e-6)
    want = 0.05 * (1 - FIXED_SHARE) / (FIXED_SHARE * 2e-6)
    assert 0.75 * want <= slow.size(100.0) <= 1.25 * want
    # a LAN: 1 ms a round trip; 5000 records already make it small
    fast = BatchSizer(max_items=100_000, max_bytes=64 * 1024 * 1024, timeout=30.0)
    drive(fast, 0.001, 2e-6)
    assert fast.size(100.0) == START_ITEMS
    # the caps: max_items, bytes (100 bytes a record) and a quarter of the timeout
    assert BatchSizer(20_000, 64 * 1024 * 1024, 30.0).size(100.0) <= 20_000
    capped = BatchSizer(100_000, 1024 * 1024, 30.0)
    drive(capped, 0.05, 2e-6)
    assert capped.size(100.0) == 1024 * 1024 // 100
    slow_link = BatchSizer(100_000, 64 * 1024 * 1024, 2.0)  # 0.5 s of a 2 s timeout at 10 us
    drive(slow_link, 0.3, 10e-6)
    assert slow_link.size(100.0) <= (0.5 - 0.3) / 10e-6 * 1.01
    # a timeout halves it
    before = slow.size(100.0)
    slow.timed_out()
    assert slow.size(100.0) == before // 2


def test_batch_caps_out_of_range_are_named(tmp_path: Path) -> None:
    import pytest

    from edge.config import ConfigError
    from tests.support.site import load

    entry = default_sink("http://127.0.0.1:9/ingest", batch={"max_bytes": "1KiB", "max_items": 200_000})
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, {"upstream": [entry]})
    text = str(exc.value)
    assert "max_bytes" in text and "64KiB to 64MiB" in text and "max_items" in text, text


def test_a_live_tail_of_small_batches_leaves_the_size_alone() -> None:
    """Batches of a few records sent by max_age say nothing of a backlog's best size, however
    their times fall."""
    sizer = BatchSizer(max_items=50_000, max_bytes=64 * 1024 * 1024, timeout=30.0)
    for k in range(40):
        n = 1 + k % 40
        sizer.observe(n, 0.05 + (0.02 if k % 3 else 0.0) - 1e-4 * n)
    assert sizer.size(100.0) == START_ITEMS
