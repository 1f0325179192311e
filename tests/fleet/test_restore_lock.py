"""A restore holds the site's lock as a gateway does: while another process holds it (a gateway
starting, before its files are open), the restore is refused naming it and replaces nothing; a
gateway started during a restore is refused by the same lock. `edge backup --out` refuses the
lock file too."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from edge.runtime import LOCK_SUFFIX, SiteLock
from tests.fleet.test_restore_backup_out import contents
from tests.fleet.test_restore_seq import readings
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file


async def test_a_restore_is_refused_while_the_sites_lock_is_held(tmp_path: Path) -> None:
    doc = {"site": {"id": "lock-site", "name": "l"}}
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest(readings(1_000.0, 20))
        await rt.journal.flush()
    archive = tmp_path / "b.tar.gz"
    done = await asyncio.to_thread(edge_cli, "backup", "-c", str(config), "--out", str(archive))
    assert done.returncode == 0, done.stderr

    lock = SiteLock(str(tmp_path / "edge.db"))
    lock.acquire()  # as a gateway does first thing, before any file of the site is open
    try:
        before = contents(tmp_path)
        done = await asyncio.to_thread(edge_cli, "restore", "-c", str(config), str(archive))
        assert done.returncode != 0, done.stdout
        assert f"(pid {os.getpid()}) is running this site" in done.stderr, done.stderr
        assert contents(tmp_path) == before

        out = tmp_path / f"edge.db{LOCK_SUFFIX}"
        done = await asyncio.to_thread(edge_cli, "backup", "-c", str(config), "--out", str(out))
        assert done.returncode == 1 and "the site's lock file" in done.stderr, done.stderr
    finally:
        lock.release()

    done = await asyncio.to_thread(edge_cli, "restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / f"edge.db{LOCK_SUFFIX}").exists()  # released by the restore at its end
