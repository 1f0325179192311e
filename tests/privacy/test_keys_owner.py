"""Two sites whose journals lie in one folder (north.db, south.db) never share keys.db, the state
database or the trend index without a word: keys.db and the state DB record the journal they go
with (the first to open an unclaimed file claims it) and refuse another's, and the trend index is
named from its journal. A single site's files beside edge.db are claimed on their first open."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge import paths
from edge.privacy.component import PrivacyStartError
from edge.privacy.keyfile import load_master_key
from edge.privacy.keys import SubjectKeys
from edge.runtime import Runtime
from edge.state import StateDB, StateDBError
from tests.privacy.conftest import RESIDENT, SYSTOLIC, private_records, site_doc
from tests.support.cli import edge_cli
from tests.support.site import load, running_site, site_file


def named(master: Path, folder: Path, journal: str) -> str:
    return site_doc(master) + f"storage: {{path: {folder / journal}}}\n"


async def test_a_second_journal_in_the_folder_is_refused_keys_db_and_forgets_nothing(
    tmp_path: Path, master: Path
) -> None:
    north = named(master, tmp_path, "north.db")
    async with running_site(tmp_path, north, web=False) as rt:
        rt.hub.ingest(private_records())
        await rt.journal.flush()
    # a state DB of its own: the keys are what south would share (a shared state DB is refused
    # first, tests/core/test_state_claim.py)
    south = site_doc(master) + (
        f"storage: {{path: {tmp_path / 'south.db'}, state_path: {tmp_path / 'south-state.db'}}}\n"
    )
    keys = tmp_path / "keys.db"
    before = keys.read_bytes()

    rt = Runtime(load(tmp_path, south), with_web=False)
    try:
        with pytest.raises(PrivacyStartError) as err:
            await rt.start()
    finally:
        await rt.stop()
    assert str(keys) in str(err.value) and "north.db" in str(err.value), err.value

    south_file = site_file(tmp_path, south, name="south.yaml")
    done = edge_cli("privacy", "forget", "-c", str(south_file), "--subject", RESIDENT)
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "north.db" in out and "Traceback" not in out, out
    assert keys.read_bytes() == before  # south deleted none of north's keys

    north_file = site_file(tmp_path, north, name="north.yaml")
    done = edge_cli("privacy", "export", "-c", str(north_file), "--subject", RESIDENT)
    assert done.returncode == 0 and str(SYSTOLIC) in done.stdout, done.stderr


def test_the_trend_index_is_named_from_a_journal_that_is_not_edge_db(tmp_path: Path) -> None:
    assert paths.trend_path(str(tmp_path / "edge.db")) == str(tmp_path / "trend.db")
    north, south = paths.trend_path(str(tmp_path / "north.db")), paths.trend_path(str(tmp_path / "south.db"))
    assert north != south and Path(north).parent == tmp_path
    assert north not in (str(tmp_path / "north.db"), str(tmp_path / "trend.db"))


def test_the_state_db_goes_with_one_journal(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    StateDB(path).close()  # written before it recorded its journal: claimed at the next open
    StateDB(path, journal=str(tmp_path / "edge.db")).close()
    StateDB(path, journal=str(tmp_path / "edge.db")).close()
    with pytest.raises(StateDBError) as err:
        StateDB(path, journal=str(tmp_path / "south.db"))
    assert path in str(err.value) and "edge.db" in str(err.value) and "state_path" in str(err.value)


def test_an_unclaimed_keys_db_is_claimed_by_its_first_journal(tmp_path: Path, master: Path) -> None:
    key = load_master_key(master)
    with SubjectKeys(tmp_path / "keys.db", key) as keys:  # as an earlier version left it
        keys.seal(RESIDENT, b"x", b"aad")
    with SubjectKeys(tmp_path / "keys.db", key, journal="edge.db") as keys:
        assert keys.kid_of(RESIDENT) is not None
    with pytest.raises(ValueError, match=r"edge\.db"):
        SubjectKeys(tmp_path / "keys.db", key, journal="south.db")
