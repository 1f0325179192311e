"""A disk filled by another program: the journal keeps what it committed (drop_oldest deletes only to
make room newer rows then use), journals a drop burst when it starts, says how soon the disk is
full, and logs a full disk once rather than at every step. A real journal on a real small tmpfs."""

from __future__ import annotations

import asyncio
import errno
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from edge.config import StorageConfig
from edge.store import space
from edge.store.health import buffer_health
from edge.store.journal import Journal
from tests.store.helpers import drop_events, integrity, open_journal, readings, sql
from tests.support.tools import in_ci, require_root
from tests.support.waiting import until

pytestmark = pytest.mark.root

RESERVE = 1024**2
STEP = 2000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    require_root("mounts an 8 MiB tmpfs for another program to fill")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        msg = f"cannot mount a tmpfs: {mounted.stderr.strip()}"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_leaving(disk: Path, left: int) -> list[Path]:
    """Another program takes the free space until about `left` bytes are free (64 KiB files)."""
    files: list[Path] = []
    chunk = b"\1" * 64 * 1024
    while (space.free_bytes(str(disk / "x")) or 0) - len(chunk) >= left:
        f = disk / f"other-{len(files)}"
        files.append(f)
        try:
            f.write_bytes(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            break
    return files


def started_events(path: str) -> list[dict[str, object]]:
    return [p for p in (orjson.loads(raw) for _, raw in drop_events(path)) if p.get("phase") == "started"]


async def test_committed_rows_stay_and_a_burst_is_journaled_when_it_starts(small_disk: Path) -> None:
    """Filled from outside above the reserve (as in the field: 1.3 MiB free, 1 MiB reserved) with a
    consumer that has nothing yet: what was committed stays, newer records wait in memory, those
    beyond max_pending are counted, and that burst's start is in the file while it lasts."""
    j = open_journal(
        small_disk, when_full="drop_oldest", disk_reserve=RESERVE, flush_max_items=STEP, max_pending=10_000
    )
    n = 0
    try:
        await j.register_cursor("central", "pull", 0)
        j.append(readings(3000, device="before"))
        n += 3000
        await j.flush()
        committed = j.committed_seq
        assert committed == 3000
        files = fill_leaving(small_disk, RESERVE + 300 * 1024)
        free = space.free_bytes(j.path)
        assert free is not None and RESERVE < free < RESERVE + 400 * 1024

        def more() -> int:
            nonlocal n
            j.append(readings(200, device=f"d{n % 7}"))
            n += 200
            return j.counters["dropped_overflow"]

        await until(lambda: more() > 0 and started_events(j.path), 30, what="a burst started and journaled")
        started = started_events(j.path)
        assert started[0]["reason"] == "queue_overflow" and started[0]["dropped"] == 0
        assert int(str(started[0]["dropped_so_far"])) > 0
        # the burst goes on (records keep coming, nothing more fits) and the disk is still full
        more()
        assert j.disk_full and j.failing and j.pending > 0
        # nothing committed was deleted to make room the newer records never got
        assert j.counters["dropped_oldest"] == 0
        assert sql(j, "SELECT count(*) FROM journal WHERE seq <= ?", (committed,))[0][0] == committed
        h = buffer_health(j, StorageConfig(path=j.path, disk_reserve=RESERVE))
        assert h["rows"] >= committed and h["dropped_oldest"] == 0

        for f in files:  # the other program gives the space back
            f.unlink()
        await until(lambda: not j.disk_full and j.pending == 0, 30, what="space back, backlog in")
        await j.flush()
        assert sql(j, "SELECT count(*) FROM journal WHERE seq <= ?", (committed,))[0][0] == committed
        dropped = j.counters["dropped_overflow"]
        ended = await until(
            lambda: [
                p for p in (orjson.loads(r) for _, r in drop_events(j.path)) if p.get("phase") == "ended"
            ],
            20,
            what="the burst's end",
        )
        # the start counts nothing itself: the events still add up to the counters
        events = drop_events(j.path)
        assert sum(orjson.loads(p)["dropped"] for _, p in events) == dropped == ended[0]["dropped"]
        stored = sql(j, "SELECT count(*) FROM journal")[0][0]
        assert stored == j.counters["rows"] and stored + dropped == n + len(events)
    finally:
        await j.close()
    assert integrity(j.path) == "ok"


async def test_time_until_full_counts_the_disk(small_disk: Path) -> None:
    """max_bytes is 4 GiB, the disk takes ~1.5 MiB more: the figure says seconds, not days."""
    j = open_journal(small_disk, disk_reserve=RESERVE, flush_max_items=STEP)
    storage = StorageConfig(path=j.path, disk_reserve=RESERVE)
    try:
        fill_leaving(small_disk, RESERVE + 1536 * 1024)

        async def growing() -> bool:
            j.append(readings(100))
            await j.flush()
            await asyncio.sleep(0.02)  # readings arrive over time: ~5,000 a second, 1.5 MiB in ~5 s
            return j.rates()[0] is not None

        for _ in range(200):  # two rate samples a second apart
            if await growing():
                break
        h = buffer_health(j, storage)
        assert h["max_bytes"] == 4 * 1024**3 and h["ingest_rate"] > 0
        room = h["file_bytes"] - h["bytes"] + h["free_bytes"] - RESERVE
        expected = room / ((h["ingest_rate"] - (h["expiry_rate"] or 0)) * h["bytes_per_row"])
        print(f"\ntime until full {h['time_until_full_s']} s (disk allows {room} bytes more)")
        assert h["time_until_full_s"] is not None
        assert h["time_until_full_s"] == pytest.approx(expected, rel=0.05, abs=1.0)
        assert h["time_until_full_s"] < 600
    finally:
        await j.close()


async def test_a_disk_filled_elsewhere_is_logged_once_and_space_back_once(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another program leaves a little more than the reserve while readings keep coming: one
    line says the disk is full, one says space is back once it is, nothing in between."""
    j = open_journal(small_disk, when_full="drop_oldest", disk_reserve=RESERVE, flush_max_items=STEP)
    caplog.set_level(logging.INFO, logger="edge.store")
    try:
        await j.register_cursor("central", "pull", 0)
        j.append(readings(3000, device="before"))
        await j.flush()
        files = fill_leaving(small_disk, RESERVE + 300 * 1024)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while loop.time() - t0 < 4.0:  # readings keep coming for a while: ~5,000 a second
            j.append(readings(100))
            await asyncio.sleep(0.02)
        assert j.disk_full
        held = [r.getMessage() for r in caplog.records if r.name == "edge.store"]
        print(f"\nwhile full: {held}")
        assert len([m for m in held if "disk full" in m]) == 1, held
        assert not [m for m in held if "space is back" in m], held
        for f in files:
            f.unlink()
        await until(lambda: not j.disk_full and j.pending == 0, 30, what="space back, backlog in")
        lines = [r.getMessage() for r in caplog.records if r.name == "edge.store"]
        assert len([m for m in lines if "space is back" in m]) == 1, lines
        assert len([m for m in lines if "disk full" in m]) == 1, lines
        assert j.counters["dropped_oldest"] == 0
    finally:
        await j.close()


async def test_a_journal_at_the_disks_limit_keeps_the_newest_and_says_so_once(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The journal itself fills what another program left: drop_oldest replaces its oldest rows
    as newer ones come (it neither empties itself nor stops writing), said once in the log."""
    (small_disk / "other").write_bytes(b"\0" * 4 * 1024**2)
    j = open_journal(small_disk, when_full="drop_oldest", disk_reserve=RESERVE, flush_max_items=STEP)
    caplog.set_level(logging.INFO, logger="edge.store")
    n = 0
    try:
        await j.register_cursor("central", "sink", 0)

        async def ingest() -> None:
            nonlocal n
            j.append(readings(500, device=f"d{n % 7}"))
            n += 500
            await asyncio.sleep(0.01)  # readings arrive over time, not in one burst

        while j.counters["dropped_oldest"] == 0:
            assert n < 1_000_000, "the disk never filled"
            await ingest()
        rows_at_limit, seq_at_limit, n_at_limit = j.counters["rows"], j.committed_seq, n
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while loop.time() - t0 < 4.0:  # steady at the limit for a while
            await ingest()
        await asyncio.wait_for(j.flush(), 20)  # every record committed (pending is only the queue)
        lines = [r.getMessage() for r in caplog.records if r.name == "edge.store"]
        print(f"\nat the limit: {lines}; {j.committed_seq - seq_at_limit} committed since")
        assert len([m for m in lines if "keeps the newest" in m]) == 1, lines
        assert not [m for m in lines if "disk full" in m or "space is back" in m], lines
        # it kept writing, and every reading appended is committed or counted as dropped
        assert j.committed_seq - seq_at_limit >= 0.9 * (n - n_at_limit)
        assert j.committed_seq + j.counters["dropped_newest"] + j.counters["dropped_overflow"] >= n
        assert not j.failing and not j.disk_full and j.disk_low
        # the oldest went only as newer rows took their place: the journal did not empty itself
        assert j.counters["rows"] >= rows_at_limit * 0.8
        assert j.counters["rows"] + j.counters["dropped_oldest"] == j.committed_seq
        free = space.free_bytes(j.path)
        assert free is not None and free >= RESERVE
    finally:
        await j.close()
    assert integrity(j.path) == "ok"


async def test_a_reader_sees_the_same_disk_limit(small_disk: Path) -> None:
    """`edge buffer stats` (another process, no writer) also counts the disk in time_until_full."""
    j = open_journal(small_disk, disk_reserve=RESERVE, flush_max_items=STEP)
    try:
        fill_leaving(small_disk, RESERVE + 1536 * 1024)
        for _ in range(10):  # the reader estimates the rate from the newest rows' timestamps
            j.append(readings(1000))
        await j.flush()
    finally:
        await j.close()
    reader = Journal.open_readonly(j.path)
    try:
        h = buffer_health(reader, StorageConfig(path=j.path, disk_reserve=RESERVE))
    finally:
        reader.close_sync()
    assert h["writer"] == "not running" and h["free_bytes"] is not None
    # ~1.5 MiB more at the rate of the rows just written (max_bytes alone said ~3,000 times more)
    room = h["file_bytes"] - h["bytes"] + h["free_bytes"] - RESERVE
    expected = room / (h["ingest_rate"] * h["bytes_per_row"])
    assert h["time_until_full_s"] == pytest.approx(expected, rel=0.05, abs=1.0)
