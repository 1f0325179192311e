"""keys.db is the gateway's own space on the journal's disk: a burst of new subjects (plates)
that grows it and its WAL toward the reserve is neither taken for another program's doing (which
would stop the journal committing and drop what it holds at the stop) nor kept: the journal asks
for the key store's WAL back as it asks for the state database's. A real runtime on a real small
tmpfs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from edge.privacy.keyfile import create_master_key
from edge.store import space
from tests.store.helpers import readings
from tests.store.test_disk_filled_elsewhere import fill_leaving, small_disk  # noqa: F401
from tests.support.site import running_site
from tests.support.waiting import until_async

pytestmark = pytest.mark.root

RESERVE = 1024**2


def site(disk: Path, master: Path) -> str:
    return f"""
site: {{id: keys-site}}
storage: {{path: {disk / "edge.db"}, disk_reserve: 1MiB, when_full: drop_oldest}}
privacy: {{master_key_file: {master}}}
devices:
  - id: gate-1
    driver: sim
    points:
      - {{name: loop_occupied, type: bool, signal: constant, value: false, interval: 1h}}
"""


async def test_a_burst_of_new_subjects_is_the_gateways_own_space(
    tmp_path: Path,
    small_disk: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    master = tmp_path / "master.key"
    create_master_key(master)
    caplog.set_level(logging.INFO, logger="edge.store")
    async with running_site(tmp_path, site(small_disk, master)) as rt:
        journal, privacy = rt.journal, rt.components["privacy"]
        keys = privacy.sealer.keys
        journal.append(readings(2000, device="before"))
        await journal.flush()
        others = fill_leaving(small_disk, RESERVE + 1536 * 1024)
        journal.append(readings(200, device="measured"))  # a step that measures the disk as it is
        await journal.flush()

        # a burst of new plates, each a new data key: keys.db's WAL takes what was left
        def new_plates(first: int) -> None:
            for i in range(first, first + 20):
                keys.seal(f"沪Q{i:05d}", b"x", b"aad")

        n = 0
        while (space.free_bytes(journal.path) or 0) > RESERVE + 64 * 1024:
            await asyncio.to_thread(new_plates, n)
            n += 20
        assert space.file_size(keys.path + "-wal") > 1024**2
        assert privacy.keys_bytes() == space.file_size(keys.path) + space.file_size(keys.path + "-wal")

        journal.append(readings(2000, device="after"))

        async def committed() -> bool:
            await journal.flush()
            return journal.pending == 0 and not journal.disk_full

        await until_async(committed, timeout=30, what="the records after the burst committed")
        assert journal.counters.get("dropped_overflow", 0) == 0
        assert privacy.status()["keys_wal_given_back"] >= 1
        assert space.file_size(keys.path + "-wal") < 1024**2
        for f in others:
            f.unlink()
    said = [r.getMessage() for r in caplog.records if r.name == "edge.store"]
    assert not [m for m in said if "another program" in m], said
