"""A data folder whose name holds `#`, `?` or `%` (a mount point, a site named so): every read-only
or URI-opened SQLite file of the site opens that file, not one named by the part before the `#`.
A real runtime, the journal's readers and the read-only commands."""

from __future__ import annotations

from pathlib import Path

from edge.paths import sqlite_uri
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file

SITE = {
    "devices": [
        {
            "id": "meter",
            "driver": "sim",
            "points": [{"name": "kw", "signal": "constant", "value": 2.5, "interval": "1h"}],
        }
    ]
}


def test_the_uri_names_the_file_whatever_its_name() -> None:
    assert sqlite_uri("/data/a#b?c%d/edge.db") == "file:///data/a%23b%3Fc%25d/edge.db?mode=ro"


async def test_a_site_in_a_folder_named_with_uri_characters_reads_its_own_files(tmp_path: Path) -> None:
    folder = tmp_path / "site #1?%"
    folder.mkdir()
    doc = {**SITE, "storage": {"path": str(folder / "edge.db")}}
    async with running_site(folder, doc, web=False) as rt:
        await rt.journal.flush()
    done = edge_cli("buffer", "tail", "-c", str(site_file(folder, doc)), "--json")
    assert done.returncode == 0, done.stderr
    assert "meter.kw" in done.stdout
    done = edge_cli("sync", "status", "-c", str(site_file(folder, doc)))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "site ").exists()  # no file made at the name cut at the '#'
