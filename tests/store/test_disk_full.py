"""Full-disk test: the journal on a small tmpfs fills it up, keeps running, applies its full policy,
counts and reports the drops, keeps every committed record, and recovers when space returns."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from edge.config import StorageConfig
from edge.store.health import buffer_health
from tests.store.helpers import drop_events, integrity, open_journal, readings
from tests.support.tools import require_root
from tests.support.waiting import until

pytestmark = pytest.mark.root


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    require_root("mounts an 8 MiB tmpfs to fill it up")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize(
    ("policy", "reserve"),
    [
        ("drop_oldest", 1024**2),  # sees the disk filling and deletes the oldest before SQLite fails
        ("drop_newest", None),  # no free-space check: hits the real SQLITE_FULL ("database or disk is full")
        ("drop_oldest", None),  # real SQLITE_FULL under drop_oldest: holds the newest, frees the oldest
    ],
)
async def test_full_disk_applies_policy_and_recovers(
    small_disk: Path, policy: str, reserve: int | None
) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 4 * 1024**2)  # another tenant of the disk, deleted later
    j = open_journal(
        small_disk, when_full=policy, disk_reserve=reserve, wal_autocheckpoint=100, max_pending=20_000
    )
    counter = "dropped_oldest" if policy == "drop_oldest" else "dropped_newest"
    if policy == "drop_oldest" and reserve is None:
        counter = "disk_full"  # the first sign is the SQLite error itself
    try:
        await j.register_cursor("central", "sink", 0)  # the uplink is down: nothing is delivered
        n = 0

        async def ingest(batches: int) -> None:
            nonlocal n
            for _ in range(batches):
                j.append(readings(200, device=f"d{n % 7}"))
                n += 200
                await asyncio.sleep(0.002)

        while j.counters[counter] == 0:
            assert n < 2_000_000, "the disk never filled"
            await ingest(20)
        committed_at_full = j.committed_seq
        await ingest(100)  # keeps running while full
        h = buffer_health(j, StorageConfig(path=j.path, when_full=policy))
        assert h[counter] > 0 and (h["disk_low"] or h["disk_full"] or h["disk_full_errors"] > 0)
        if policy == "drop_newest":
            assert h["disk_full_errors"] > 0 and "disk is full" in h["last_error"]
            # nothing committed was lost: refusals only ever concern new records
            assert j.query("SELECT count(*) FROM journal WHERE seq <= ?", (committed_at_full,))[0][0] == (
                committed_at_full
            )
        else:
            assert j.counters["rows"] + j.counters["dropped_oldest"] == j.committed_seq
        os.remove(filler)  # space returns
        before = j.committed_seq
        await ingest(50)
        await until(lambda: j.committed_seq >= before + 50 * 200 and not j.failing, 20, what="recovery")
        dropped = sum(j.counters[c] for c in ("dropped_oldest", "dropped_newest", "dropped_overflow"))

        def reported() -> list[tuple[int, str]] | None:
            # one event per drop burst; the last burst is reported when it closes, so wait for the
            # events to account for every counted drop rather than for the first one
            found = drop_events(j.path)
            return found if sum(orjson.loads(p)["dropped"] for _, p in found) == dropped else None

        events = await until(reported, 20, what="buffer_drop events for every counted drop")
        payloads = [orjson.loads(p) for _, p in events]
        # a real SQLITE_FULL under drop_oldest may leave no room to delete in the file: the oldest
        # records waiting in memory are dropped instead (queue_overflow), still counted and reported
        reasons = (
            {"disk_full", "queue_overflow"} if reserve is None and policy == "drop_oldest" else {"disk_full"}
        )
        assert {p["reason"] for p in payloads} <= reasons and all(p["policy"] == policy for p in payloads)
        dropped = sum(j.counters[c] for c in ("dropped_oldest", "dropped_newest", "dropped_overflow"))
        assert dropped > 0 and sum(p["dropped"] for p in payloads) == dropped
        stored = j.query("SELECT count(*) FROM journal")[0][0]
        assert stored == j.counters["rows"]
        assert stored + dropped == n + len(events)  # every record is stored or counted
    finally:
        await j.close()
    assert integrity(str(small_disk / "edge.db")) == "ok"
