"""`edge backup --out` never writes over one of the site's own files: the journal (it replaced
the live journal with the gzip), the state DB, the trend index, the site file, a link to one of
them, or a path inside the snapshot folder. Refused with nothing changed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fleet.test_restore_seq import readings
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


async def test_backup_refuses_an_out_that_is_one_of_the_sites_files(tmp_path: Path) -> None:
    doc = {"site": {"id": "out-site", "name": "o"}}
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest(readings(1_000.0, 50))
        await rt.journal.flush()
    (tmp_path / "blobs").mkdir()
    (tmp_path / "nightly.tar.gz").symlink_to(tmp_path / "state.db")
    cases = {
        str(tmp_path / "edge.db"): f"the journal's file {tmp_path / 'edge.db'}",
        str(tmp_path / "sub" / ".." / "trend.db"): f"the trend index's file {tmp_path / 'trend.db'}",
        str(tmp_path / "nightly.tar.gz"): f"the state DB's file {tmp_path / 'state.db'}",
        str(config): f"the site file {config}",
        str(tmp_path / "blobs" / "b.tar.gz"): "inside the snapshot folder",
    }
    before = contents(tmp_path)
    for out, what in cases.items():
        done = await asyncio.to_thread(edge_cli, "backup", "-c", str(config), "--out", out)
        assert done.returncode == 1, (out, done.stdout)
        assert f"that is {what}" in done.stderr and "would replace it" in done.stderr, done.stderr
    assert contents(tmp_path) == before
    done = await asyncio.to_thread(edge_cli, "backup", "-c", str(config), "--out", str(tmp_path / "b.tar.gz"))
    assert done.returncode == 0, done.stderr
