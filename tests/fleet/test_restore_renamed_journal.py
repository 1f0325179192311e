"""A backup restored beside a journal of another name (a site moved to a new box whose storage.path
names its journal otherwise): the restored state DB goes with the journal it is restored beside,
so the site starts, its accounts and tokens intact; it recorded the archive's journal name and
refused the start."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edge.api.tokens import create_token, list_tokens
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file


def doc(folder: Path, journal: str) -> dict[str, Any]:
    return {
        "site": {"id": "moved-site", "name": "m"},
        "storage": {"path": str(folder / journal)},
        "devices": [
            {
                "id": "meter",
                "driver": "sim",
                "points": [{"name": "kw", "signal": "constant", "value": 1.0, "interval": "1h"}],
            }
        ],
    }


async def test_a_backup_restored_beside_a_journal_of_another_name_starts(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    archive = tmp_path / "nightly.tar.gz"
    old_doc, new_doc = doc(old, "north.db"), doc(new, "edge.db")
    async with running_site(old, old_doc, web=False) as rt:
        assert rt.state is not None
        create_token(rt.state, "bms", ["read"])
    done = await asyncio.to_thread(
        edge_cli, "backup", "-c", str(site_file(old, old_doc)), "--out", str(archive)
    )
    assert done.returncode == 0, done.stderr
    config = site_file(new, new_doc)
    done = await asyncio.to_thread(
        edge_cli, "restore", "-c", str(config), str(archive), "--continue-after", "0"
    )
    assert done.returncode == 0, done.stderr
    async with running_site(new, new_doc, web=False) as rt:
        assert rt.state is not None
        assert [t["name"] for t in list_tokens(rt.state)] == ["bms"]
