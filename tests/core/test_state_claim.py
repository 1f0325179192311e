"""Two sites whose journals share a folder (north.db and south.db) and whose state DB is therefore
the same state.db: whichever opens it first claims it, and every opening of the other's, by the
gateway or a command, is refused naming both journals. A token or account made for one is never
the other's."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.runtime import Runtime, StartError
from tests.support.cli import ROOT, edge_cli
from tests.support.site import load, site_file


def site_doc(tmp_path: Path, name: str) -> dict[str, object]:
    return {
        "site": {"id": name, "name": name},
        "storage": {"path": str(tmp_path / f"{name}.db")},
        "devices": [
            {
                "id": "meter-1",
                "driver": "sim",
                "points": [{"name": "kw", "signal": "constant", "value": 1.0, "interval": "1h"}],
            }
        ],
    }


def refused(done: subprocess.CompletedProcess[str]) -> str:
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "north.db" in out and "south.db" in out and "Traceback" not in out, out
    return out


def test_a_second_site_in_the_folder_is_refused_the_first_sites_state(tmp_path: Path) -> None:
    north = site_file(tmp_path, site_doc(tmp_path, "north"), name="north.yaml")
    south = site_file(tmp_path, site_doc(tmp_path, "south"), name="south.yaml")

    made = edge_cli("tokens", "create", "-c", str(north), "bms")
    assert made.returncode == 0, made.stderr
    listed = edge_cli("tokens", "list", "-c", str(north))
    assert listed.returncode == 0 and "bms" in listed.stdout, listed.stderr

    # south's commands see nothing of north's: no token listed, none made, no account added
    refused(edge_cli("tokens", "list", "-c", str(south)))
    refused(edge_cli("tokens", "create", "-c", str(south), "bms"))
    # nor is north's audit log verified or exported as south's
    refused(edge_cli("audit", "verify", "-c", str(south)))
    refused(edge_cli("audit", "export", "-c", str(south)))
    pack = tmp_path / "pack.yaml"
    pack.write_text("rules:\n  - {id: r1, when: meter-1.kw, if: value > 1, notify: always}\n")
    refused(edge_cli("rules", "import", "-c", str(south), str(pack)))  # nor rules stored in north's
    refused(edge_cli("rules", "export", "-c", str(south)))
    # edge check (the unit's ExecStartPre) says so before a start would fail
    out = refused(edge_cli("check", "-c", str(south)))
    assert "storage" in out and "folder of its own" in out, out
    assert edge_cli("check", "-c", str(north)).returncode == 0
    adding = subprocess.run(
        [sys.executable, "-m", "edge.cli", "users", "add", "-c", str(south), "--password-stdin", "ann"],
        cwd=ROOT,
        input="a-long-password-1\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "state database goes with the journal north.db" in refused(adding)

    # nor does south's gateway start on it (so north's token is never accepted there)
    run = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(south)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    refused(run)
    with contextlib.closing(sqlite3.connect(tmp_path / "state.db")) as db:
        assert db.execute("SELECT journal FROM belongs_to").fetchall() == [("north.db",)]
        assert db.execute("SELECT name FROM api_tokens").fetchall() == [("bms",)]
    listed = edge_cli("tokens", "list", "-c", str(north))
    assert listed.returncode == 0 and "bms" in listed.stdout, listed.stderr


async def test_the_runtime_refuses_another_journals_state_db(tmp_path: Path) -> None:
    done = edge_cli("tokens", "create", "-c", str(site_file(tmp_path, site_doc(tmp_path, "north"))), "bms")
    assert done.returncode == 0, done.stderr
    rt = Runtime(load(tmp_path, site_doc(tmp_path, "south")), with_web=False)
    try:
        with pytest.raises(StartError) as err:
            await rt.start()
    finally:
        await rt.stop()
    assert "goes with the journal north.db, not with south.db" in str(err.value)


def test_the_lock_refusal_asks_for_a_folder_of_its_own(tmp_path: Path) -> None:
    from edge.runtime import SiteBusy, SiteLock

    held, other = SiteLock(str(tmp_path / "edge.db")), SiteLock(str(tmp_path / "edge.db"))
    held.acquire()
    try:
        with pytest.raises(SiteBusy) as err:
            other.acquire()
    finally:
        held.release()
    assert "storage.path in a folder of its own" in str(err.value)


async def test_sync_status_does_not_read_another_sites_state(tmp_path: Path) -> None:
    """A south journal of before (two sites once shared the folder): `edge sync status` of south does
    not show north's dead letters and sinks' status as south's."""
    from edge.store.journal import Journal
    from tests.support.site import running_site

    async with running_site(tmp_path, site_doc(tmp_path, "north"), web=False):
        pass
    journal = Journal(str(tmp_path / "south.db")).open()
    await journal.close()
    south = site_file(tmp_path, site_doc(tmp_path, "south"), name="south.yaml")
    out = refused(edge_cli("sync", "status", "-c", str(south)))
    assert "folder of its own" in out, out
