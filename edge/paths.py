"""Where the site's derived data files lie, named from `storage.path` (the journal's file).

The store that writes them and `edge.fileperm`, which makes them private, both need these names;
here they need no part of the store to learn them.
"""

from __future__ import annotations

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
