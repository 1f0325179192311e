"""A keys.db that is not a database, or that the site's master key does not open, is said so, naming
the file and what to do: by `edge run` and the privacy commands (no traceback), and by `edge
doctor` before a start would fail."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge.privacy.keyfile import create_master_key
from tests.privacy.conftest import RESIDENT, private_records, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file


async def sealed_site(tmp_path: Path, master: Path) -> Path:
    async with running_site(tmp_path, site_doc(master), web=False) as rt:
        rt.hub.ingest(private_records())
        await rt.journal.flush()
    return site_file(tmp_path, site_doc(master))


def doctor_keys(config: Path) -> list[dict[str, str]]:
    done = edge_cli("doctor", "-c", str(config), "--json")
    assert "Traceback" not in done.stderr, done.stderr
    return [f for f in json.loads(done.stdout)["findings"] if f["check"] == "keys"]


async def test_a_keys_db_that_is_not_a_database_is_named_with_what_to_do(
    tmp_path: Path, master: Path
) -> None:
    config = await sealed_site(tmp_path, master)
    keys = tmp_path / "keys.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{keys}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - the site is stopped
    keys.write_bytes(os.urandom(65536))
    damaged = keys.read_bytes()

    run = edge_cli("run", "-c", str(config), timeout=60)
    forget = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    for done in (run, forget):
        out = done.stdout + done.stderr
        assert done.returncode == 1, out
        assert str(keys) in out and "not a SQLite database" in out and "fleet.md" in out, out
        assert "Traceback" not in out, out
    assert keys.read_bytes() == damaged  # nothing was changed

    [finding] = doctor_keys(config)
    assert finding["severity"] == "error" and str(keys) in finding["message"]


async def test_edge_doctor_says_the_master_key_does_not_open_keys_db(tmp_path: Path, master: Path) -> None:
    config = await sealed_site(tmp_path, master)
    [finding] = doctor_keys(config)
    assert finding["severity"] == "ok", finding

    other = tmp_path / "other.key"
    create_master_key(other)
    config = site_file(tmp_path, site_doc(other))
    [finding] = doctor_keys(config)
    assert finding["severity"] == "error", finding
    assert str(other) in finding["message"] and "does not open" in finding["message"]
    assert str(tmp_path / "keys.db") in finding["message"] and finding["fix"]
    assert not (tmp_path / "keys.db-shm").exists()  # read without a trace


async def test_edge_doctor_says_keys_db_is_missing_while_records_are_sealed(
    tmp_path: Path, master: Path
) -> None:
    config = await sealed_site(tmp_path, master)
    (tmp_path / "keys.db").rename(tmp_path / "keys.db.aside")
    [finding] = doctor_keys(config)
    assert finding["severity"] == "error" and "missing" in finding["message"], finding
    assert not (tmp_path / "keys.db").exists()
