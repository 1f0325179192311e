"""`edge doctor`'s quick_check beside a running gateway: a state DB another process holds open in
WAL mode, its -wal truncated to nothing (state.db and keys.db checkpoint with TRUNCATE while the
gateway runs), is read as an ordinary read-only reader, never as an immutable file (an immutable
read takes no lock: a checkpoint writing the file meanwhile can show a damage that is not there),
and is sound while a writer commits and checkpoints alongside. Real processes, real SQLite files."""

from __future__ import annotations

import select
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.doctor import check_integrity
from tests.support.procs import stop_process

ROOT = Path(__file__).resolve().parents[2]

#: the gateway's side: the state DB opened by the project's StateDB (WAL), filled, its -wal
#: truncated to nothing, then held open until stdin closes
HOLDER = """
import sys
from edge.state import StateDB
db = StateDB(sys.argv[1])
db.conn.execute("CREATE TABLE filler (n INTEGER PRIMARY KEY, body TEXT)")
db.conn.executemany("INSERT INTO filler (body) VALUES (?)", ((f"{i:06d}" * 40,) for i in range(3000)))
assert db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
print("open", flush=True)
sys.stdin.read()
"""
#: a writer alongside: commits and truncating checkpoints, one after the other, until killed
WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
n = 0
while True:
    conn.executemany("INSERT INTO filler (body) VALUES (?)", ((f"{n:06d}" * 40,) for _ in range(200)))
    conn.execute("DELETE FROM filler WHERE n IN (SELECT n FROM filler ORDER BY n LIMIT 200)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    n += 1
    if n == 1:
        print("writing", flush=True)
"""


def spawn(script: str, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, str(db)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def said(proc: subprocess.Popen[str], line: str, timeout: float = 30) -> None:
    """Wait (at most `timeout` s) for `proc` to print `line`."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"{line!r} not printed within {timeout:g}s"
    assert proc.stdout.readline().strip() == line


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The URIs the doctor opens databases with (each opened by SQLite as asked)."""
    uris: list[str] = []
    connect: Callable[..., sqlite3.Connection] = sqlite3.connect

    def recording(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        uris.append(str(database))
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", recording)
    yield uris


def test_a_state_db_open_in_the_gateway_is_checked_as_a_live_database(
    tmp_path: Path, opened: list[str]
) -> None:
    journal, state = tmp_path / "edge.db", tmp_path / "state.db"
    site = {"storage": {"path": str(journal)}}
    holder = spawn(HOLDER, state)
    writer = None
    try:
        said(holder, "open")
        assert Path(f"{state}-shm").exists() and Path(f"{state}-wal").stat().st_size == 0
        (found,) = check_integrity(site)
        assert (found.severity, found.message) == ("ok", "state.db"), found
        (uri,) = opened
        assert uri.startswith(state.as_uri()) and "mode=ro" in uri and "immutable" not in uri
        writer = spawn(WRITER, state)
        said(writer, "writing")
        for n in range(20):  # checked again and again while the writer commits and checkpoints
            (found,) = check_integrity(site)
            assert (found.severity, found.message) == ("ok", "state.db"), (n, found)
        assert writer.poll() is None  # it was writing all along
        assert not any("immutable" in uri for uri in opened)
    finally:
        stop_process(writer)
        if holder.stdin is not None:
            holder.stdin.close()
        stop_process(holder)


def test_a_database_nobody_has_open_is_still_read_as_immutable(tmp_path: Path, opened: list[str]) -> None:
    """No -shm, no -wal: nothing is left behind (a -wal or -shm of root's would keep the gateway out)."""
    state = tmp_path / "state.db"
    holder = spawn(HOLDER, state)
    try:
        said(holder, "open")
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        try:
            holder.wait(timeout=30)  # a clean close: SQLite deletes the -wal and -shm
        finally:
            stop_process(holder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]
    (found,) = check_integrity({"storage": {"path": str(tmp_path / "edge.db")}})
    assert (found.severity, found.message) == ("ok", "state.db"), found
    (uri,) = opened
    assert uri.endswith("?mode=ro&immutable=1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]
