"""Where the site's derived data files lie, named from `storage.path` (the journal's file).

The store that writes them and `edge.fileperm`, which makes them private, both need these names;
here they need no part of the store to learn them.
"""

from __future__ import annotations

from pathlib import Path


def trend_path(journal_path: str) -> str:
    """The trend index: `trend.db` beside the journal."""
    return str(Path(journal_path).with_name("trend.db"))
