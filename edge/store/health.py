"""Buffer health: rows, bytes, per-cursor backlog and oldest unsent age, ingest rate, time until
full, drop counters, write errors and failing retention — what `edge buffer stats` and
`/api/v1/status` show.

Whether the journal is writing right now (`disk_full`, `recovering`, `failing`) is known to the
writer alone: in its own process it is read from the journal, in another one (`edge buffer stats`)
from the state the running writer publishes (`edge.store.space.StatusFile`). Either way the free
space is measured now and compared with the reserve, so a disk filled by another program shows as
full even before the writer's next step.

Every figure comes from cheap lookups (pragmas, primary-key probes, the persisted `rows` counter),
never from a scan of the journal, so it is safe to call on a multi-GiB file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.store import space
from edge.store.journal import Journal, retention_failing

if TYPE_CHECKING:
    from edge.config import StorageConfig

RATE_PROBE_ROWS = 10_000  # a read-only journal estimates its rate from the span of its last rows


def _rate_from_data(journal: Journal, now: float) -> float | None:
    """Records per second over the newest rows (for a reader without a writer to measure it)."""
    last = journal.committed_seq
    probe = journal.first_at_or_after(max(0, last - RATE_PROBE_ROWS) + 1)
    if probe is None or probe[0] >= last:
        return None
    span = now - float(probe[1])
    return (last - probe[0]) / span if span > 0 else None


def writer_state(journal: Journal, storage: StorageConfig) -> dict[str, Any]:
    """disk_full / recovering / failing and the free-space figures, from the writer when it runs."""
    live = journal.writing
    if live:
        state: dict[str, Any] = {
            "writer": "this process",
            "disk_full": journal.disk_full,
            "recovering": journal.recovering,
            "failing": journal.failing,
            "backlog_rows": journal.pending if journal.disk_full else 0,
            "last_error": journal.last_error,
            "disk_reserve": journal.disk_reserve,
            "min_free_bytes": journal.min_free_bytes,
            "peak_wal_bytes": journal.peak_wal_bytes,
            "last_recovery": journal.last_recovery,
            "retention_paused": journal.retention_paused,
            "retention_failures": journal.retention_failures,
            "retention_failing": journal.retention_problem,
        }
    else:
        published = space.read_status(journal.path)
        state = {
            "writer": f"pid {published['pid']}" if published else "not running",
            "disk_full": bool(published and published.get("disk_full")),
            "recovering": bool(published and published.get("recovering")),
            "failing": bool(published and published.get("failing")),
            "backlog_rows": int((published or {}).get("backlog_rows") or 0),
            "last_error": str((published or {}).get("last_error") or ""),
            "disk_reserve": published.get("disk_reserve") if published else storage.disk_reserve,
            "min_free_bytes": (published or {}).get("min_free_bytes"),
            "peak_wal_bytes": (published or {}).get("peak_wal_bytes"),
            "last_recovery": (published or {}).get("last_recovery"),
            "retention_paused": (published or {}).get("retention_paused"),
            "retention_failures": int((published or {}).get("retention_failures") or 0),
            "retention_failing": _retention_failing(published),
        }
    free = space.free_bytes(journal.path)
    state["free_bytes"] = free
    reserve = state["disk_reserve"]
    if free is not None and reserve is not None and free < reserve:
        # the writer refuses any step that would take the reserve: full now, whatever it last said
        state["disk_full"] = True
        if not state["last_error"]:
            state["last_error"] = f"disk full: {free} bytes free, {reserve} reserved for the journal"
    return state


def _retention_failing(published: dict[str, Any] | None) -> str | None:
    """The running writer's `Journal.retention_problem`, from the state it published."""
    error = (published or {}).get("retention_error")
    if not error:
        return None
    return retention_failing(int((published or {}).get("retention_failures") or 0), str(error))


def effective_limit(
    max_bytes: int | None, file_bytes: int, free: int | None, reserve: int | None
) -> int | None:
    """The bytes the journal's data can reach: `max_bytes`, or what the disk allows above the
    reserve when that is less (the file as allocated plus the free space beyond the reserve)."""
    by_disk = None if free is None else file_bytes + max(0, free - (reserve or 0))
    if max_bytes is None:
        return by_disk
    return max_bytes if by_disk is None else min(max_bytes, by_disk)


def buffer_health(journal: Journal, storage: StorageConfig) -> dict[str, Any]:
    now = journal.clock()
    first = journal.first_at_or_after(0)
    page_size, pages, free = journal.pages()
    used = (pages - free) * page_size
    counters = dict(journal.counters)
    rows = counters.get("rows", 0)
    max_bytes = journal.max_bytes if journal.writing else storage.max_bytes
    cursors = {}
    for name, (kind, seq, updated) in journal.cursors().items():
        oldest_ts = journal.oldest_after(seq)
        cursors[name] = {
            "kind": kind,
            "seq": seq,
            "backlog": journal.unsent(seq, journal.committed_seq)[0],
            "oldest_unsent_ts": oldest_ts,
            "oldest_unsent_age_s": round(max(0.0, now - oldest_ts), 3) if oldest_ts is not None else None,
            "updated": updated,
        }
    if journal.writing:  # the live writer measures what it commits and what it expires
        ingest, expiring = journal.rates()
    else:
        ingest, expiring = _rate_from_data(journal, now), None
    writer = writer_state(journal, storage)
    # Time until full: the net growth (ingest minus expiry) at the measured bytes per row, up to
    # the effective limit: max_bytes, or less when the disk takes less (the file's free pages
    # plus the free space beyond the reserve)
    limit = effective_limit(max_bytes, pages * page_size, writer["free_bytes"], writer["disk_reserve"])
    row_bytes = used / rows if rows else None
    time_until_full = None
    if ingest and row_bytes and limit is not None:
        net = (ingest - (expiring or 0.0)) * row_bytes
        if net > 0:
            time_until_full = max(0.0, (limit - used) / net)
    return {
        "rows": rows,
        "first_seq": first[0] if first else None,
        "last_seq": journal.committed_seq,
        "oldest_ts": float(first[1]) if first else None,
        "bytes": used,
        "file_bytes": pages * page_size,
        "wal_bytes": space.file_size(journal.path + "-wal"),
        "max_bytes": max_bytes,
        "when_full": journal.when_full if journal.writing else storage.when_full,
        "keep_history_s": storage.keep_history,
        "durability": storage.durability,
        "pending": journal.pending if journal.writing else writer["backlog_rows"],
        "ingest_rate": round(ingest, 1) if ingest is not None else 0.0,
        "expiry_rate": round(expiring, 1) if expiring is not None else None,
        "bytes_per_row": round(row_bytes, 1) if row_bytes else None,
        "time_until_full_s": round(time_until_full, 1) if time_until_full is not None else None,
        "dropped_oldest": counters.get("dropped_oldest", 0),
        "dropped_newest": counters.get("dropped_newest", 0),
        "dropped_overflow": counters.get("dropped_overflow", 0),
        "dropped_unwritable": counters.get("dropped_unwritable", 0),
        "history_trimmed": counters.get("history_trimmed", 0),
        "retention_deleted": counters.get("retention_deleted", 0),
        "retention_expired": counters.get("retention_expired", 0),
        "snapshots_expired": counters.get("snapshots_expired", 0),
        "sealed_existing": counters.get("sealed_existing", 0),
        "ints_as_floats": counters.get("ints_as_floats", 0),
        "disk_full_errors": counters.get("disk_full", 0),
        "write_errors": counters.get("write_errors", 0),
        "disk_low": journal.disk_low,
        **writer,
        "cursors": cursors,
    }
