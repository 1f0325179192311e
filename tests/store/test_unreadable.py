"""A journal file that is not a SQLite database: the error names the file and what to do, nothing
in it is changed, and the commands print that one line instead of a traceback. A damaged trend.db
is derived data: the log says so and it is rebuilt."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from edge.store.journal import Journal, JournalUnreadable
from edge.store.trend import TrendIndex
from tests.store.test_trend import SIM, assert_matches_journal
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file

GARBAGE = os.urandom(3000) + b"not a database"


def garbage_journal(tmp_path: Path) -> Path:
    db = tmp_path / "edge.db"
    db.write_bytes(GARBAGE)
    return db


def untouched(db: Path) -> None:
    assert db.read_bytes() == GARBAGE
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith("edge.db")) == ["edge.db"]


@pytest.mark.parametrize("how", ["writer", "reader"])
def test_a_journal_that_is_not_a_database_is_named_and_left_alone(tmp_path: Path, how: str) -> None:
    db = garbage_journal(tmp_path)
    with pytest.raises(JournalUnreadable) as err:
        if how == "writer":
            Journal(str(db)).open()
        else:
            Journal.open_readonly(str(db))
    msg = str(err.value)
    assert msg.startswith(f"journal {db} is not a SQLite database")
    assert "restore it from a backup or move it aside" in msg and msg.endswith("nothing was changed")
    untouched(db)


@pytest.mark.parametrize("command", [["buffer", "stats"], ["run"], ["check"]])
def test_the_commands_print_the_named_error_without_a_traceback(tmp_path: Path, command: list[str]) -> None:
    db = garbage_journal(tmp_path)
    site = site_file(tmp_path, {"storage": {"path": str(db)}})
    out = edge_cli(*command, "-c", str(site))
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert f"journal {db} is not a SQLite database" in text and "nothing was changed" in text
    assert "Traceback" not in text, text
    untouched(db)


async def test_a_trend_file_that_is_not_a_database_is_rebuilt_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trend = tmp_path / "trend.db"
    trend.write_bytes(GARBAGE)
    with caplog.at_level(logging.WARNING, logger="edge.store"):
        async with running_site(tmp_path, SIM, web=False) as rt:
            index = rt.components["trend"]
            assert isinstance(index, TrendIndex)
            await rt.journal.flush()
            assert await index.caught_up() >= 1
            assert assert_matches_journal(tmp_path) >= 1
    said = [r.getMessage() for r in caplog.records if str(trend) in r.getMessage()]
    assert said and "not a SQLite database or is damaged" in said[0] and "rebuilding it" in said[0]
