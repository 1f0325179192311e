"""Buffer health: rows, bytes, per-cursor backlog and oldest unsent age, ingest rate, time until full."""

from __future__ import annotations

from typing import Any

from edge.config import StorageConfig
from edge.store.journal import Journal


def buffer_health(journal: Journal, storage: StorageConfig) -> dict[str, Any]:
    rows = journal.query("SELECT count(*), min(seq), max(seq) FROM journal")[0]
    page_size = journal.query("PRAGMA page_size")[0][0]
    pages = journal.query("PRAGMA page_count")[0][0]
    free = journal.query("PRAGMA freelist_count")[0][0]
    cursors = {}
    for name, (kind, seq, updated) in journal.cursors().items():
        oldest = journal.query("SELECT ts FROM journal WHERE seq > ? ORDER BY seq LIMIT 1", (seq,))
        cursors[name] = {
            "kind": kind,
            "seq": seq,
            "backlog": max(0, journal.committed_seq - seq),
            "oldest_unsent_ts": oldest[0][0] if oldest else None,
            "updated": updated,
        }
    return {
        "rows": rows[0],
        "first_seq": rows[1],
        "last_seq": journal.committed_seq,
        "bytes": (pages - free) * page_size,
        "max_bytes": storage.max_bytes,
        "when_full": storage.when_full,
        "cursors": cursors,
    }
