"""`edge privacy rotate-key` rewraps the data keys under a new master key without rewriting the
journal: what was sealed opens with the new key, and the old key opens nothing."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from edge.privacy.component import PrivacyStartError
from edge.privacy.keyfile import load_master_key
from edge.privacy.keys import SubjectKeys, WrongMasterKey
from edge.runtime import Runtime
from tests.privacy.conftest import RESIDENT, SECRET_VALUE, private_records, site_doc
from tests.support.cli import edge_cli
from tests.support.site import load, running_site, site_file


async def start_fails(tmp_path: Path, doc: str) -> str:
    """The message a start that must fail raised (the runtime is stopped again)."""
    rt = Runtime(load(tmp_path, doc), with_web=False)
    try:
        with pytest.raises(PrivacyStartError) as err:
            await rt.start()
    finally:
        await rt.stop()
    return str(err.value)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_rotation_rewraps_keys_only_and_the_old_master_key_opens_nothing(
    tmp_path: Path, master: Path
) -> None:
    async with running_site(tmp_path, site_doc(master)) as rt:
        rt.hub.ingest(private_records())
        await rt.journal.flush()
    journal_before = digest(tmp_path / "edge.db")
    config = site_file(tmp_path, site_doc(master))
    new = tmp_path / "master-2.key"
    done = edge_cli("privacy", "rotate-key", "-c", str(config), "--new-key", str(new))
    assert done.returncode == 0, done.stderr
    assert new.stat().st_mode & 0o077 == 0
    assert digest(tmp_path / "edge.db") == journal_before  # the journal was not rewritten

    with pytest.raises(WrongMasterKey):
        SubjectKeys(tmp_path / "keys.db", load_master_key(master))
    assert "does not open" in await start_fails(tmp_path, site_doc(master))

    async with running_site(tmp_path, site_doc(new)) as rt:
        records = rt.journal.read(0, 1000)
        assert (
            next(r for r in records if r.get("kind") == "blood_pressure")["payload"]["resident"] == RESIDENT
        )
        assert SECRET_VALUE in [r.get("value") for r in records]


async def test_a_master_key_others_may_read_stops_the_start_naming_the_file(
    tmp_path: Path, master: Path
) -> None:
    master.chmod(0o640)  # noqa: ASYNC240 - a test's own file, before the start
    assert re.search(r"master\.key.*mode 0640.*0600", await start_fails(tmp_path, site_doc(master)))
    config = site_file(tmp_path, site_doc(master))
    checked = edge_cli("check", "-c", str(config))
    assert checked.returncode != 0 and "privacy.master_key_file" in checked.stdout + checked.stderr


def test_edge_run_with_a_master_key_it_cannot_use_says_why_without_a_traceback(
    tmp_path: Path, master: Path
) -> None:
    """A master key others may read stops `edge run` with exit 1 and the one line that names the
    file and its mode, as any start a person can fix does: no traceback."""
    from tests.support.cli import edge_cli

    master.chmod(0o644)
    config = site_file(tmp_path, site_doc(master))
    done = edge_cli("run", "-c", str(config), timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "start failed" in out and "master.key" in out and "0644" in out, out
    assert "Traceback" not in out, out
