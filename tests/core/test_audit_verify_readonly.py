"""`edge audit verify` and `edge audit export` only read the audit log (edge/audit.py), run as the
real `edge` command against a real state DB file: an entry forged without a hash, or edited with
its hash erased, with the head's `pending` flag set, is reported as a break and stays as it was
(the command opens the file read-only); a later start of the gateway (`ensure` on an opened
StateDB) does not chain it in either; `pending` alone is a break; a state DB from before the chain
is refused by verify, unchanged, and chained by the migration that brings in the chain."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge import audit
from edge.state import StateDB
from tests.support.site import site_file

EDGE = str(Path(sys.executable).with_name("edge"))


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path]:
    """A site file and its state DB with five entries, written the way the gateway writes them."""
    path = tmp_path / "state.db"
    state = StateDB(str(path))
    for i in range(5):
        audit.record(state, "wang", "point_write", f"pump.p{i}", value=i)
    state.close()
    config = site_file(tmp_path, {"devices": [], "storage": {"state_path": str(path)}})
    return config, path


def sql(path: Path, *statements: str) -> None:
    """Changes made behind the gateway's back, with SQLite itself (checkpointed on close)."""
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([EDGE, *args], capture_output=True, text=True, timeout=60, env=env, check=False)


def files(path: Path) -> dict[str, str]:
    """The state DB's files and their digests: what a read-only command must leave as it found."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.parent.glob(path.name + "*"))
        # SQLite's shared-memory index and an empty WAL: what any reader of a WAL file sets up
        if not p.name.endswith("-shm") and p.stat().st_size
    }


def hashes(path: Path) -> list[tuple[int, str | None]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT id, hash FROM audit ORDER BY id").fetchall()
    finally:
        conn.close()


FORGED = "INSERT INTO audit(ts, actor, action, target, detail) VALUES (1800000000, 'admin', 'token_create', 'forged', '{}')"
EDITED = (
    "UPDATE audit SET actor='view', hash=NULL, prev_hash=NULL WHERE id=5",
    "UPDATE audit_head SET last_id=4, last_hash=(SELECT hash FROM audit WHERE id=4)",
)
PENDING = "UPDATE audit_head SET pending=1"


@pytest.mark.parametrize(
    ("tamper", "entry", "why"),
    [
        ((FORGED, PENDING), 6, "entry #6 has no hash"),
        ((*EDITED, PENDING), 5, "entry #5 has no hash"),
    ],
    ids=["forged_entry", "edited_entry_hash_erased"],
)
def test_verify_reports_an_unhashed_entry_and_leaves_it_unhashed(
    site: tuple[Path, Path], tamper: tuple[str, ...], entry: int, why: str
) -> None:
    config, path = site
    sql(path, *tamper)
    before = files(path)
    for _ in range(2):  # a second run finds the same: the first changed nothing
        done = edge("audit", "verify", "-c", str(config))
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout.startswith(f"audit log broken at entry #{entry}: {why}")
    assert files(path) == before
    assert (entry, None) in hashes(path)

    out = path.parent / "audit.jsonl"
    assert edge("audit", "export", "-c", str(config), "--output", str(out)).returncode == 0
    assert [e["hash"] for e in map(json.loads, out.read_text().splitlines()) if e["id"] == entry] == [None]
    assert (entry, None) in hashes(path)  # the export appended its own entry and hashed nothing else

    state = StateDB(str(path))  # what a gateway start does with the file
    try:
        audit.ensure(state)
        audit.record(state, "wang", "login", "wang")
    finally:
        state.close()
    assert (entry, None) in hashes(path)
    done = edge("audit", "verify", "-c", str(config))
    assert done.returncode == 1 and done.stdout.startswith(f"audit log broken at entry #{entry}: {why}")


def test_a_head_asking_for_chaining_is_a_break(site: tuple[Path, Path]) -> None:
    config, path = site
    sql(path, PENDING)
    done = edge("audit", "verify", "-c", str(config))
    assert done.returncode == 1
    assert done.stdout.startswith("audit log broken at the log: the head record asks for unhashed entries")
    assert done.stdout.splitlines()[-1] == "5 entries before it verified"


def test_a_state_db_from_before_the_chain_is_chained_once_by_its_migration(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    with conn:  # a state DB of the release before the chain: audit schema 1
        conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        conn.executescript(audit.MIGRATIONS[0])
        conn.execute("INSERT INTO schema_versions VALUES ('audit', 1)")
        for i in range(3):
            conn.execute(
                "INSERT INTO audit(ts, actor, action, target) VALUES (?, 'wang', 'login', 'wang')",
                (1_700_000_000.0 + i,),
            )
    conn.close()
    with pytest.raises(audit.NotChainedYet, match="from before its hash chain"):
        audit.verify(path)  # read-only: it cannot chain, and says so
    config = site_file(tmp_path, {"devices": [], "storage": {"state_path": str(path)}})
    done = edge("audit", "verify", "-c", str(config))
    assert (done.returncode, done.stdout.split(",")[0]) == (0, "audit log intact: 3 entries"), done.stderr
    assert "chained the 3 audit entries written before the hash chain existed" in done.stderr
    assert all(h is not None for _, h in hashes(path))

    sql(path, FORGED, PENDING)  # from here on, the migration has run: nothing chains again
    before = files(path)
    done = edge("audit", "verify", "-c", str(config))
    assert done.returncode == 1 and done.stdout.startswith(
        "audit log broken at entry #4: entry #4 has no hash"
    )
    assert "chained" not in done.stderr
    assert files(path) == before


def test_a_chaining_an_earlier_release_left_unfinished_is_finished_once(tmp_path: Path) -> None:
    """An earlier release migrated to the chain (its tables, `pending` set) and chained the entries
    in a transaction of its own: stopped between the two, not one entry is hashed and no chained
    entry is on record. That is the rest of a migration, not a forgery: the migration finishes it."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    with conn:  # schema 2's tables, and the entries of before, none chained
        conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        conn.executescript(audit.MIGRATIONS[0])
        conn.executescript(audit.MIGRATIONS[1])
        conn.execute("INSERT INTO schema_versions VALUES ('audit', 2)")
        for i in range(3):
            conn.execute(
                "INSERT INTO audit(ts, actor, action, target) VALUES (?, 'wang', 'login', 'wang')",
                (1_700_000_000.0 + i,),
            )
    conn.close()
    with pytest.raises(audit.NotChainedYet):
        audit.verify(path)  # read-only: it cannot finish it, and says so
    config = site_file(tmp_path, {"devices": [], "storage": {"state_path": str(path)}})
    done = edge("audit", "verify", "-c", str(config))
    assert (done.returncode, done.stdout.split(",")[0]) == (0, "audit log intact: 3 entries"), done.stderr
    assert all(h is not None for _, h in hashes(path))
    state = StateDB(str(path))  # a later start: nothing more to do, the log stays intact
    try:
        audit.record(state, "li", "login", "li")
    finally:
        state.close()
    done = edge("audit", "verify", "-c", str(config))
    assert (done.returncode, done.stdout.split(",")[0]) == (0, "audit log intact: 4 entries"), done.stderr
