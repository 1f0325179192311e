"""The site's keys as the commands and the gateway use them: `edge check` (the unit's
ExecStartPre) finds a master key that does not open keys.db."""

from __future__ import annotations

from pathlib import Path

from edge.privacy.keyfile import create_master_key
from tests.privacy.conftest import private_records, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file


async def sealed_site(tmp_path: Path, master: Path) -> Path:
    async with running_site(tmp_path, site_doc(master), web=False) as rt:
        rt.hub.ingest(private_records())
        await rt.journal.flush()
    return site_file(tmp_path, site_doc(master))


async def test_edge_check_finds_a_master_key_that_does_not_open_keys_db(tmp_path: Path, master: Path) -> None:
    config = await sealed_site(tmp_path, master)
    assert edge_cli("check", "-c", str(config)).returncode == 0

    other = tmp_path / "other.key"
    create_master_key(other)
    config = site_file(tmp_path, site_doc(other))
    checked = edge_cli("check", "-c", str(config))
    out = checked.stdout + checked.stderr
    assert checked.returncode != 0, out
    assert "privacy.master_key_file" in out and "does not open the key store" in out, out
