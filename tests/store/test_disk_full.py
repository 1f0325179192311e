"""Full-disk test: the journal on a small tmpfs fills it up, keeps running, applies its full policy,
counts and reports the drops, keeps every committed record, and recovers when space returns."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from edge.api.tokens import create_token
from edge.config import StorageConfig
from edge.model import Record
from edge.store import space
from edge.store.health import buffer_health
from edge.store.journal import Journal
from tests.store.helpers import drop_events, integrity, open_journal, readings, sql
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.tools import require_root
from tests.support.waiting import until, until_async

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
            assert sql(j, "SELECT count(*) FROM journal WHERE seq <= ?", (committed_at_full,))[0][0] == (
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
        stored = sql(j, "SELECT count(*) FROM journal")[0][0]
        assert stored == j.counters["rows"]
        assert stored + dropped == n + len(events)  # every record is stored or counted
    finally:
        await j.close()
    assert integrity(str(small_disk / "edge.db")) == "ok"


def fill(disk: Path) -> list[Path]:
    """Another program takes every free byte, in 256 KiB files that can be given back one by one."""
    files: list[Path] = []
    chunk = b"\1" * 256 * 1024
    while True:
        f = disk / f"filler-{len(files)}"
        files.append(f)
        try:
            with open(f, "wb") as out:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            return files


def free_until(files: list[Path], disk: Path, target: int) -> None:
    """Give back filler files until `target` bytes are free."""
    while (space.free_bytes(str(disk / "edge.db")) or 0) < target:
        files.pop().unlink()


class DiskSampler:
    """Lowest free space and largest WAL seen while the journal writes, sampled by a thread."""

    def __init__(self, db: Path) -> None:
        self.db = str(db)
        self.min_free: int | None = None
        self.max_wal = 0
        self.armed = threading.Event()  # set once space was given back: the full disk itself is not counted
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.0005):
            if not self.armed.is_set():
                continue
            free = space.free_bytes(self.db)
            if free is not None:
                self.min_free = free if self.min_free is None else min(self.min_free, free)
            self.max_wal = max(self.max_wal, space.file_size(self.db + "-wal"))

    def __enter__(self) -> DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def phase(h: dict[str, Any]) -> str:
    return "recovering" if h["recovering"] else "full" if h["disk_full"] else "ok"


RESERVE = 1024**2
STEP = 2000  # flush_max_items: records per transaction


class Flow:
    """A journal on the small disk with readings flowing in and no uplink (nothing delivered)."""

    def __init__(self, disk: Path) -> None:
        self.db = disk / "edge.db"
        self.disk = disk
        self.storage = StorageConfig(path=str(self.db), disk_reserve=RESERVE)
        self.j = open_journal(disk, disk_reserve=RESERVE, flush_max_items=STEP, max_pending=60_000)
        self.n = 0  # records appended

    def ingest(self, rows: int) -> None:
        for _ in range(rows // 200):
            batch: list[Record] = list(readings(200, device=f"d{self.n % 7}"))
            self.j.append(batch)
            self.n += 200

    def seen_by_another_process(self) -> dict[str, Any]:
        reader = Journal.open_readonly(str(self.db))  # what `edge buffer stats` opens
        try:
            return buffer_health(reader, self.storage)
        finally:
            reader.close_sync()

    async def fill_while_flowing(self) -> list[Path]:
        """Another program takes the whole disk while readings keep coming: at most max_pending
        wait in memory, the rest is counted."""
        await self.j.register_cursor("central", "sink", 0)
        self.ingest(20_000)
        await self.j.flush()
        assert phase(buffer_health(self.j, self.storage)) == "ok"
        assert phase(self.seen_by_another_process()) == "ok"
        files = fill(self.disk)
        self.ingest(70_000)
        j = self.j
        await until(lambda: j.disk_full and j.counters["dropped_overflow"] > 0, 20, what="disk full")
        assert j.pending <= j.max_pending
        return files

    async def assert_every_record_accounted(self) -> None:
        """Stored or counted, and every counted drop reported by a buffer_drop event."""
        j = self.j
        await j.flush()
        dropped = sum(j.counters[c] for c in ("dropped_oldest", "dropped_newest", "dropped_overflow"))
        events = await until(
            lambda: (
                (found := drop_events(str(self.db)))
                and sum(orjson.loads(p)["dropped"] for _, p in found) == dropped
                and found
            ),
            20,
            what="buffer_drop events for every counted drop",
        )
        stored = sql(j, "SELECT count(*) FROM journal")[0][0]
        assert stored == j.counters["rows"] and stored + dropped == self.n + len(events)


async def test_recovery_from_a_full_disk_keeps_the_reserve_and_status_tells_each_phase(
    small_disk: Path, tmp_path: Path
) -> None:
    flow = Flow(small_disk)
    j, db = flow.j, flow.db
    site = site_file(tmp_path, {"storage": {"path": str(db), "disk_reserve": RESERVE}})
    try:
        files = await flow.fill_while_flowing()
        h = await until(
            lambda: (s := flow.seen_by_another_process())["backlog_rows"] >= 50_000 and s,
            20,
            what="the backlog published",
        )
        assert h["disk_full"] and h["failing"] and not h["recovering"] and h["free_bytes"] < RESERVE
        assert h["writer"].startswith("pid ") and "disk full" in h["last_error"]
        cli = edge_cli("buffer", "stats", "-c", str(site), "--json")
        assert cli.returncode == 0, cli.stderr
        shown = json.loads(cli.stdout)
        assert shown["disk_full"] and shown["failing"] and shown["backlog_rows"] >= 50_000
        assert shown["free_bytes"] < shown["disk_reserve"] == RESERVE

        # space returns, but not enough for the whole backlog in one transaction
        backlog = j.pending
        with DiskSampler(db) as sampler:
            # what another process sees before the space returns: the writer may start recovering
            # as soon as it does, before a second look could catch "full"
            published = [phase(flow.seen_by_another_process())]
            phases = [phase(buffer_health(j, flow.storage))]
            t0 = time.monotonic()
            free_until(files, small_disk, RESERVE + 3 * 1024**2)
            sampler.armed.set()
            room = space.free_bytes(str(db))
            assert room is not None
            polls = 0

            def caught_up() -> bool:
                nonlocal polls
                polls += 1
                if polls <= 50:  # readings keep flowing during the recovery (not enough to fill the disk)
                    flow.ingest(200)
                now = phase(buffer_health(j, flow.storage))
                if now != phases[-1]:
                    phases.append(now)
                if polls % 4 == 0 or now == "ok":  # another process's view costs more: less often
                    other = phase(flow.seen_by_another_process())
                    if other != published[-1]:
                        published.append(other)
                return published[-1] == "ok" and now == "ok"

            await until(caught_up, 60, interval=0.002, what="recovery")
            took = time.monotonic() - t0
        print(f"\nrecovery of {backlog} records: {took:.2f} s, {j.last_recovery}")
        print(f"phases {phases}, seen from another process {published}")
        print(
            f"lowest free {sampler.min_free} bytes (reserve {RESERVE}), largest WAL {sampler.max_wal} bytes"
        )
        assert phases == ["full", "recovering", "ok"], phases
        assert published[0] == "full" and published[-1] == "ok", published
        assert sampler.min_free is not None and sampler.min_free >= RESERVE
        assert j.min_free_bytes is not None and j.min_free_bytes >= RESERVE
        assert sampler.max_wal <= room - RESERVE
        assert j.last_recovery is not None and j.last_recovery["steps"] > 1
        assert j.last_recovery["rows"] >= backlog
        # nothing kept in memory was dropped on the way back: only the overflow while full
        assert j.counters["dropped_oldest"] == j.counters["dropped_newest"] == 0
        await flow.assert_every_record_accounted()
    finally:
        await j.close()
    assert integrity(str(db)) == "ok"
    assert phase(flow.seen_by_another_process()) == "ok"


async def test_a_reader_holding_a_snapshot_stops_the_recovery_short_of_the_reserve(small_disk: Path) -> None:
    """A reader's snapshot keeps the checkpoint from giving the WAL back: the steps go on until the
    WAL has taken the room beyond the reserve, then the writer holds (still full, backlog left);
    once the reader lets go, the rest goes in."""
    flow = Flow(small_disk)
    j, db = flow.j, flow.db
    try:
        files = await flow.fill_while_flowing()
        await until(lambda: j.pending >= 50_000, 20, what="a backlog")
        snapshot = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        committed = j.committed_seq
        with DiskSampler(db) as sampler:
            try:
                snapshot.execute("BEGIN")
                snapshot.execute("SELECT count(*) FROM journal").fetchone()  # its snapshot from here on
                free_until(files, small_disk, RESERVE + 2 * 1024**2)
                sampler.armed.set()
                room = space.free_bytes(str(db))
                assert room is not None

                def holding() -> bool:  # some steps went in, then the WAL filled the room
                    return j.committed_seq > committed and j.failing and j.disk_full and not j.recovering

                await until(holding, 30, what="the writer holding short of the reserve")
                held = j.pending
                h = flow.seen_by_another_process()
                assert h["disk_full"] and not h["recovering"] and h["backlog_rows"] > 0
                assert space.file_size(str(db) + "-wal") > 512 * 1024  # the WAL took the room...
                assert sampler.min_free is not None and sampler.min_free >= RESERVE  # ...not the reserve
            finally:
                snapshot.close()
            await until(
                lambda: not j.disk_full and j.pending < STEP, 30, what="recovery once the reader is gone"
            )
        assert sampler.min_free >= RESERVE  # the checkpoint that copied the held WAL into the file too
        assert sampler.max_wal <= room - RESERVE
        print(
            f"\nheld {held} records with a reader's snapshot; dropped_oldest {j.counters['dropped_oldest']}"
        )
        assert held > 0
        await flow.assert_every_record_accounted()
    finally:
        await j.close()
    assert integrity(str(db)) == "ok"


async def test_the_status_api_of_a_running_gateway_tells_full_then_ok(
    small_disk: Path, tmp_path: Path
) -> None:
    """/api/v1/status → buffer, over HTTP from a running site whose journal is on the small disk."""
    doc = {
        "storage": {
            "path": str(small_disk / "edge.db"),
            "state_path": str(tmp_path / "state.db"),
            "disk_reserve": RESERVE,
            "flush_max_items": STEP,
        }
    }
    async with running_site(tmp_path, doc) as rt:
        token = create_token(rt.state, "technician", ["read"])
        url = f"http://127.0.0.1:{rt.web_port}/api/v1/status"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

            async def buffer() -> dict[str, Any]:
                async with http.get(url) as resp:
                    assert resp.status == 200, await resp.text()
                    return dict((await resp.json())["buffer"])

            assert not (await buffer())["disk_full"]
            files = fill(small_disk)
            batch: list[Record] = list(readings(2000))
            rt.journal.append(batch)
            full = await until_async_value(buffer, lambda b: b["disk_full"] and b["failing"], what="full")
            assert full["free_bytes"] < full["disk_reserve"] == RESERVE and full["writer"] == "this process"
            free_until(files, small_disk, RESERVE + 2 * 1024**2)
            ok = await until_async_value(buffer, lambda b: not b["disk_full"] and not b["failing"], what="ok")
            assert ok["free_bytes"] >= RESERVE and ok["backlog_rows"] == 0


async def until_async_value(
    fetch: Callable[[], Awaitable[dict[str, Any]]], ok: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """The first fetched value that satisfies `ok`, polled with a timeout."""
    found: dict[str, Any] = {}

    async def check() -> bool:
        found.update(await fetch())
        return ok(found)

    await until_async(check, 20, what=what)
    return found
