"""Where the site's derived data files lie, named from `storage.path` (the journal's file).

The store that writes them and `edge.fileperm`, which makes them private, both need these names;
here they need no part of the store to learn them.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_JOURNAL = "edge.db"


def trend_path(journal_path: str) -> str:
    """The trend index beside the journal: `trend.db` for the default journal name (`edge.db`),
    else named from the journal (`north.db`: `north-trend.db`), so that two sites whose journals
    share a folder never take turns rebuilding one trend file from two journals."""
    journal = Path(journal_path)
    if journal.name == DEFAULT_JOURNAL:
        return str(journal.with_name("trend.db"))
    return str(journal.with_name(f"{journal.stem}-trend.db"))


def adopt_old_trend(journal_path: str) -> str | None:
    """A site whose journal is not `edge.db` had its trend index at `trend.db` before the index was
    named from the journal: move it (with its WAL) to `trend_path`, so it is neither rebuilt from
    the whole journal nor left behind holding personal data that no retention reaches. Only when
    no `edge.db` lies beside the journal (whose index `trend.db` would be) and the new name is
    free. Returns the old path moved, else None."""
    journal = Path(journal_path)
    new = Path(trend_path(journal_path))
    old = journal.with_name("trend.db")
    if new == old or new.exists() or not old.exists() or journal.with_name(DEFAULT_JOURNAL).exists():
        return None
    for suffix in ("-wal", "-shm", ""):  # the database file last: a crash leaves it at one name
        side = Path(f"{old}{suffix}")
        if side.exists():
            side.rename(f"{new}{suffix}")
    return str(old)


def sqlite_uri(path: str | os.PathLike[str], mode: str = "ro") -> str:
    """The SQLite URI of the database at `path` opened in `mode` (`ro`, `rw`): percent-encoded, so a
    path with `#`, `?` or `%` in it names that file and no other."""
    return f"{Path(path).absolute().as_uri()}?mode={mode}"
