"""Shared helpers for the store tests: building readings, opening journals, reading drop events."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from edge.model import Reading
from edge.store.journal import Journal


def readings(
    n: int, *, start_ts: float | None = None, step: float = 0.0, device: str = "meter"
) -> list[Reading]:
    t = time.time() if start_ts is None else start_ts
    return [Reading(t + i * step, f"{device}.p{i % 50}", float(i), 0) for i in range(n)]


def open_journal(tmp_path: Path, name: str = "edge.db", **kw: Any) -> Journal:
    kw.setdefault("flush_interval", 0.02)
    return Journal(str(tmp_path / name), **kw).open()


def sql(journal: Journal, text: str, args: tuple[Any, ...] = ()) -> list[Any]:
    """A query a test writes itself, on the journal's read connection (the runtime only reads
    through the store's named queries)."""
    return journal._query(text, args)


def drop_events(path: str) -> list[tuple[int, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT seq, payload FROM journal WHERE kind='buffer_drop' ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def integrity(path: str) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def damage_journal_leaf(path: Path, *, newest: bool = False, offset: int = 0) -> int:
    """Overwrite the middle of one of the journal table's leaf pages, the `offset`-th from the
    oldest (or the newest) in b-tree order, as a bad sector would; returns its page number."""
    order = "path DESC" if newest else "path"
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        (page,) = conn.execute(
            f"SELECT pageno FROM dbstat WHERE name='journal' AND pagetype='leaf' ORDER BY {order} LIMIT 1 OFFSET ?",
            (offset,),
        ).fetchone()
    finally:
        conn.close()
    with open(path, "r+b") as f:
        f.seek(size * (page - 1) + 100)
        f.write(b"\x07" * 2000)
    return int(page)
