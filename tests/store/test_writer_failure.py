"""A failure in the journal writer never stops journaling silently: an error in a commit that is
not SQLite's (a record that cannot be sealed because the key store was rotated under the running
gateway) is counted, logged once and reported (/healthz 503, the health gate, buffer health),
the writer thread stays alive, and what is appended meanwhile is committed or counted as dropped.
`edge privacy rotate-key` refuses to run under a running gateway."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from edge.clock import ClockSample
from edge.privacy.keyfile import create_master_key, load_master_key
from edge.privacy.keys import SubjectKeys
from edge.store.health import writer_state
from edge.store.journal import Journal
from tests.privacy.conftest import PUBLIC_MARK, measurement, private_records, public_record, site_doc
from tests.store.helpers import open_journal, readings
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until


@pytest.fixture
def master(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    create_master_key(path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_key_store_rotated_under_the_gateway_is_reported_and_nothing_goes_silently(
    tmp_path: Path, master: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real cause: keys.db rewrapped under another master key by a second connection (what
    `edge privacy rotate-key` did under a running gateway) makes sealing raise WrongMasterKey
    inside the writer's commit."""
    caplog.set_level(logging.ERROR, logger="edge.store")
    public = [public_record() for _ in range(20)]
    async with running_site(tmp_path, site_doc(master)) as rt:
        j = rt.journal
        rt.hub.ingest(private_records())
        await j.flush()
        assert not j.failing
        errors_before = j.write_errors

        new = tmp_path / "master-2.key"
        create_master_key(new)
        other = SubjectKeys(tmp_path / "keys.db", load_master_key(master))
        other.rotate_master(load_master_key(new))
        other.close()

        rt.hub.ingest([measurement()])  # must be sealed: the key store no longer opens
        await until(lambda: j.write_errors >= errors_before + 3, timeout=20, what="retried commits")
        assert j._thread is not None and j._thread.is_alive()
        assert j.failing
        problem = j.writer_problem
        assert problem is not None and "rotated" in problem

        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{rt.web_port}/healthz") as resp,
        ):
            assert resp.status == 503
            body = await resp.json()
        assert body["status"] == "failing"
        assert "rotated" in body["reason"]
        assert rt.health_gate()["healthy"] is False
        assert writer_state(j, rt.site.storage)["failing"] is True

        rt.hub.ingest(public)
        committed_before = j.committed_seq
        await until(lambda: j.write_errors >= errors_before + 5, timeout=20, what="more retries")
    # logged once per distinct error (the rotation noticed, then the data key that no longer
    # unwraps), not once per retry, and through the logger rather than as a thread's traceback
    failed = [r for r in caplog.records if r.name == "edge.store" and "commit failed" in r.getMessage()]
    assert 1 <= len(failed) <= 2, [r.getMessage() for r in failed]
    # the public records appended afterwards: committed, or counted as dropped when the gateway
    # stopped with them still held for the retry
    conn = sqlite3.connect(tmp_path / "edge.db")
    try:
        (on_disk,) = conn.execute(
            "SELECT count(*) FROM journal WHERE seq > ? AND payload LIKE ?",
            (committed_before, f"%{PUBLIC_MARK}%"),
        ).fetchone()
    finally:
        conn.close()
    assert on_disk + j.counters["dropped_overflow"] >= len(public)


async def test_rotate_key_is_refused_while_the_gateway_runs_and_changes_nothing(
    tmp_path: Path, master: Path
) -> None:
    config = site_file(tmp_path, site_doc(master))
    new = tmp_path / "master-2.key"
    async with running_site(tmp_path, site_doc(master)) as rt:
        rt.hub.ingest(private_records())
        await rt.journal.flush()
        keys_db = tmp_path / "keys.db"
        before = digest(keys_db)
        done = await asyncio.to_thread(
            edge_cli, "privacy", "rotate-key", "-c", str(config), "--new-key", str(new)
        )
        assert done.returncode == 1, done.stdout
        assert "is open in process" in done.stderr
        assert "stop the service first" in done.stderr
        assert digest(keys_db) == before
        assert not new.exists()
        # the gateway goes on sealing with its key
        rt.hub.ingest([measurement()])
        await rt.journal.flush()
        assert not rt.journal.failing


def test_a_writer_thread_that_ends_is_reported_and_appends_are_counted_not_lost(tmp_path: Path) -> None:
    """Injected: the clock sample a retention pass reads (a constructor parameter) raises. With
    every commit error handled, no real cause is left that ends the writer thread; this stands
    for one (an error outside a commit that no step handles)."""

    def broken_clock() -> ClockSample:
        raise OSError("clock_gettime(CLOCK_BOOTTIME) failed")

    j: Journal = open_journal(tmp_path, clock_sample=broken_clock, retention_interval=0.05)
    try:
        deadline = asyncio.run(_wait_dead(j))
        assert deadline
        problem = j.writer_problem
        assert problem is not None and "writer stopped" in problem and "CLOCK_BOOTTIME" in problem
        assert j.failing
        dropped = j.counters["dropped_overflow"]
        j.append(readings(10))
        assert j.counters["dropped_overflow"] == dropped + 10
        # a flush answers rather than waiting for a writer that is gone
        assert asyncio.run(asyncio.wait_for(j.flush(), 5)) == j.committed_seq
    finally:
        j.close_sync()


async def _wait_dead(j: Journal) -> bool:
    await until(lambda: j._thread is not None and not j._thread.is_alive(), timeout=10, what="writer ended")
    return True
