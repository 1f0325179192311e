"""A second writer process appends rows to a journal that is open: the open journal's next commit
finds its seqs taken, numbers its records anew above them and commits, and says so."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from pathlib import Path

import orjson

from edge.model import Event, Severity
from tests.store.helpers import open_journal, readings

ROOT = Path(__file__).resolve().parents[2]

#: another process's Journal on the same file: it reads max(seq) at open, appends three events
#: and commits them at close
SECOND_WRITER = """
import sys
import time

from edge.model import Event, Severity
from edge.store.journal import Journal

j = Journal(sys.argv[1], flush_interval=0.02).open()
j.append([Event(f"other_{i}", "other", Severity.INFO, {}, time.time()) for i in range(3)])
j.close_sync()
print(j.committed_seq)
"""


def _rows(path: Path) -> list[tuple[int, str | None, str, str | None]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, kind, point, payload FROM journal ORDER BY seq").fetchall()
    finally:
        conn.close()


async def test_seqs_taken_by_another_writer_are_renumbered_and_reported(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    try:
        j.append([Event("first", "here", Severity.INFO, {}, time.time())])
        assert await j.flush() == 1
        other = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SECOND_WRITER,
            j.path,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(60):
                out, err = await other.communicate()
        finally:
            if other.returncode is None:
                other.kill()
                await other.wait()
        assert other.returncode == 0, err.decode()
        assert out.decode().strip() == "4"  # seqs 2..4, the ones this journal would give next

        mine = readings(5)
        j.append(mine)
        await j.flush()  # answered after the first attempt, committed or not
        assert await j.wait_committed(after=4, timeout=10) == 10
        assert j.seq_conflicts == 1
        assert not j.failing and j.writer_problem is None
        assert j.counters["write_errors"] == 1  # the commit that found its seqs taken
    finally:
        await j.close()

    rows = _rows(tmp_path / "edge.db")
    assert [r[0] for r in rows] == list(range(1, 11))
    assert [r[1] for r in rows[:4]] == ["first", "other_0", "other_1", "other_2"]
    conflict = rows[4]
    assert conflict[1] == "journal_seq_conflict"
    assert orjson.loads(conflict[3] or "{}") == {
        "taken_from": 2,
        "taken_to": 4,
        "renumbered": 5,  # the five readings
        "next_seq": 5,
        "conflicts": 1,
    }
    assert [r[2] for r in rows[5:]] == [r.point for r in mine]  # every reading, in order
