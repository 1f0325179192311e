"""Retention and the byte cap: what the journal deletes, when, and how every drop is accounted.

Everything here runs on the journal's writer thread, on the write connection, inside a
transaction the writer opened, so a deletion and the counters that record it commit together (or
not at all). Deletions always take the head of the journal (lowest seqs) and at most `limit` rows
at a time, so no single transaction holds the writer for long.

Vocabulary:
- *delivered*: seq <= the lowest cursor (every sink and pull consumer has it, and the KPI fold has
  read it). With no cursors at all, age alone decides retention, but nothing counts as delivered
  for the byte cap.
- *owed*: a personal or sensitive record is owed to the sinks and pull consumers whose
  `max_privacy` admits its class (`expire_class`'s `receives`), and only to them: a recipient that
  never receives the class is owed none of it, and a cursor that is no recipient's (the KPI
  fold's) is owed nothing.
- *expired*: delivered (a personal or sensitive record: to every recipient it is owed to, or owed
  to none) and older than its class's retention (public: `keep_history`) -> deleted by
  `expire_class` (normal, counted as `retention_deleted`, no event).
- *expired before delivery*: a personal or sensitive record older than its class's retention that
  a sink or consumer it is owed to has not fetched yet -> deleted all the same (the law wins over
  delivery), counted as `retention_expired` and reported as one `retention_expired` event per
  class once the retention pass has caught up. Public records are never deleted by age before
  delivery.
- *trimmed*: delivered but younger than `keep_history`, deleted because of `max_bytes`
  (`history_trimmed`, no event: no consumer loses anything).
- *dropped*: not delivered, deleted (`drop_oldest`) or refused (`drop_newest`): counted and
  reported as one `buffer_drop` event per burst.

Stores beside the journal that delete in a thread of their own (the trend index) take their time
from the journal's retention passes instead of reading the wall clock: `GuardedTime`, handed over
by an expirer (`Journal.add_expirer`) that runs only when the clock guard lets a pass through, and
`cutoffs`, each class's horizon by that time.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.model import PRIVACY_RANK, Event, Privacy, Severity

BURST_MAX_S = 60.0  # a drop burst longer than this is reported and a new one starts
BURST_QUIET_S = 1.0  # ...and one with no drop for this long has ended
#: personal and sensitive: deleted at their class's retention, delivered or not, wherever kept
PRIVATE_RANKS = (PRIVACY_RANK[Privacy.PERSONAL], PRIVACY_RANK[Privacy.SENSITIVE])


#: the kinds of cursor that belong to a recipient (a sink, a pull consumer); others (the KPI
#: fold's `kpi`) read the journal for the gateway itself
RECIPIENT_KINDS = ("sink", "consumer")


def lowest_cursor(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT min(seq), count(*) FROM cursors").fetchone()
    return int(row[0]) if row[1] else None


def lowest_owed(conn: sqlite3.Connection, rank: int, receives: Mapping[str, int] | None = None) -> int | None:
    """The lowest cursor of the recipients owed class `rank`: sinks and pull consumers whose
    highest class received (`receives`: cursor name -> PRIVACY_RANK of its `max_privacy`) is
    `rank` or above; None when none is. A recipient `receives` does not name (or every one, without
    `receives`) is taken to receive every class: a loss is reported rather than hidden."""
    low: int | None = None
    for name, kind, seq in conn.execute("SELECT name, kind, seq FROM cursors"):
        if kind not in RECIPIENT_KINDS:
            continue
        if receives is not None and receives.get(name, rank) < rank:
            continue
        low = int(seq) if low is None else min(low, int(seq))
    return low


def delete_head(conn: sqlite3.Connection, upto: int, limit: int) -> tuple[int, int, int]:
    """Delete at most `limit` of the oldest rows with seq <= upto; returns (count, first, last)."""
    if limit <= 0:
        return 0, 0, 0
    first = conn.execute("SELECT min(seq) FROM journal").fetchone()[0]
    if first is None or first > upto:
        return 0, 0, 0
    row = conn.execute(
        "SELECT seq FROM journal WHERE seq <= ? ORDER BY seq LIMIT 1 OFFSET ?", (upto, limit - 1)
    ).fetchone()
    if row is None:  # fewer than `limit` rows up to `upto`: take them all
        row = conn.execute("SELECT max(seq) FROM journal WHERE seq <= ?", (upto,)).fetchone()
    last = int(row[0])
    n = conn.execute("DELETE FROM journal WHERE seq <= ?", (last,)).rowcount
    return n, int(first), last


def cutoffs(now: float, retention_s: Mapping[int, float | None], ranks: Iterable[int]) -> dict[int, float]:
    """Per class of `ranks`, the time before which its records are past their retention at the
    trusted wall time `now` (`retention_s`: seconds by rank, the journal's); a class kept without
    limit (None) is left out."""
    out: dict[int, float] = {}
    for rank in ranks:
        keep = retention_s.get(rank)
        if keep is not None:
            out[rank] = now - keep
    return out


@dataclass(frozen=True, slots=True)
class GuardedTime:
    """The wall time a journal retention pass acted on, after its clock guard let it through, the
    monotonic time it was handed over at, and the retention per class it used. A store deleting
    in its own thread, later, advances it by the monotonic clock (which nobody sets) instead of
    reading the wall clock again: a forward jump of the wall clock since then moves it by nothing,
    a pass the guard holds hands over no new one."""

    wall: float
    mono: float
    retention_s: Mapping[int, float | None]

    def now(self, mono: float, wall: float) -> float:
        """The trusted wall time at monotonic time `mono`, never later than the wall clock `wall`
        then reads (a clock set back deletes less, never more)."""
        return min(wall, self.wall + max(0.0, mono - self.mono))


@dataclass
class ClassExpiry:
    """What one chunk of retention removed of one privacy class (applied once it commits)."""

    rank: int
    deleted: int = 0  # delivered, or owed to no recipient (or no cursor at all): retention_deleted
    expired: int = 0  # not delivered yet: retention_expired
    oldest_ts: float | None = None  # of the expired (undelivered) ones
    newest_ts: float | None = None
    more: bool = False  # the chunk was full: come back soon
    next_start: int = 0  # every row of this class up to here is gone or delivered-and-young


def expire_class(
    conn: sqlite3.Connection,
    rank: int,
    cutoff_ts: float,
    *,
    start: int,
    committed: int,
    limit: int,
    swept: dict[int, int] | None = None,
    now: float | None = None,
    sweep: bool = True,
    receives: Mapping[str, int] | None = None,
) -> ClassExpiry:
    """Delete up to `limit` rows of privacy class `rank` older than the cutoff, oldest seq first,
    from `start` (exclusive; every earlier row of the class is gone). Public rows (rank 0) only up
    to the lowest cursor; personal and sensitive rows up to `committed`, delivered or not.

    Rows are visited in seq order and the walk stops at the first row of the class that is young
    enough to keep: records arrive in time order, so what follows is younger too. The next chunk
    starts there, so a class's walk never revisits rows: its cost is the rows between the two,
    not the journal.

    A stamp is the wall clock's, though, and seq order is commit order: a wall clock that ran
    ahead and was set back stamps rows "young" that were committed before rows already past their
    retention. For a personal or sensitive class the walk therefore does not trust a young row to
    end it: past it, `sweep_for_expired` looks, one bounded window of seqs per pass, for a later
    row of the class stamped before the cutoff (so not after the pass's own time). A row of the
    class committed before such a row and stamped after the pass's own time `now` (a clock that
    was ahead) is at least as old as it, whatever its stamp says: it goes with it, counted as the
    rest, so a row stamped in the future never holds the others. A row between them stamped in the
    past but after the cutoff is kept: the later row's stamp may be the wrong one (a box that
    booted with its clock behind), and the walk comes back to it. `sweep`: look ahead at all in
    this pass (the caller spaces the look-aheads out).

    A deleted personal or sensitive row counts as expired before delivery only above the cursor of
    a recipient it is owed to (`lowest_owed`, `receives`: cursor name -> the highest class the sink
    or consumer receives); a row no recipient may receive goes as retention_deleted, no warning."""
    safe = lowest_cursor(conn)
    upto = min(safe, committed) if (rank == 0 and safe is not None) else committed
    owed = safe if rank == 0 else lowest_owed(conn, rank, receives)
    res = ClassExpiry(rank, next_start=max(start, 0))
    if upto <= start:
        return res
    cur = conn.execute(
        "SELECT seq, ts FROM journal WHERE seq > ? AND seq <= ? AND privacy = ? ORDER BY seq",
        (start, upto, rank),
    )
    taken: list[tuple[int, float]] = []
    young: int | None = None
    for seq, ts in cur:
        if ts >= cutoff_ts:
            young = seq
            break
        taken.append((seq, ts))
        if len(taken) >= limit:
            break
    cur.close()
    behind: int | None = None  # the last row of the class (past `young`) stamped before the cutoff
    kept: int | None = None  # the first row past `young` kept for its young stamp in the past
    walked = len(taken)  # the rows before `young`: every row of the class in [first, walked-th]
    if young is not None and rank in PRIVATE_RANKS and sweep and len(taken) < limit:
        behind = sweep_for_expired(
            conn, rank, cutoff_ts, young=young, upto=upto, window=limit * SWEEP_CHUNKS, swept=swept
        )
        if behind is not None:
            later = float("inf") if now is None else now
            room = limit - len(taken)
            seen = conn.execute(
                "SELECT seq, ts FROM journal WHERE seq >= ? AND seq <= ? AND privacy = ? AND (ts < ? OR ts > ?) "
                "ORDER BY seq LIMIT ?",
                (young, behind, rank, cutoff_ts, later, room),
            ).fetchall()
            taken += seen
            kept = conn.execute(
                "SELECT min(seq) FROM journal WHERE seq >= ? AND seq <= ? AND privacy = ? AND ts >= ? AND ts <= ?",
                (young, behind, rank, cutoff_ts, later),
            ).fetchone()[0]
            if swept is not None and len(seen) >= room and seen[-1][0] < behind:  # the chunk ran out
                swept[rank] = behind - 1
    if taken:
        first, last = taken[0][0], taken[walked - 1][0] if walked else None
        if last is not None:  # the walk took every row of the class in [first, last]: exactly those
            conn.execute(
                "DELETE FROM journal WHERE seq >= ? AND seq <= ? AND privacy = ?", (first, last, rank)
            )
        if len(taken) > walked:  # past the young row, the rows taken one by one
            conn.executemany("DELETE FROM journal WHERE seq = ?", [(seq,) for seq, _ in taken[walked:]])
        for seq, ts in taken:
            if owed is None or seq <= owed:
                res.deleted += 1
            else:
                res.expired += 1
                res.oldest_ts = ts if res.oldest_ts is None else min(res.oldest_ts, ts)
                res.newest_ts = ts if res.newest_ts is None else max(res.newest_ts, ts)
    if kept is not None and young is not None:  # a young row stays: the walk starts there again
        res.more, res.next_start = behind is not None, young - 1
    elif len(taken) >= limit:
        res.more, res.next_start = True, taken[-1][0]
    elif behind is not None:  # more may hide further on: the next pass sweeps on from here
        res.more, res.next_start = True, behind
    elif young is not None:
        res.next_start = young - 1
    else:
        res.next_start = upto
    return res


#: how far past a young row one pass of a personal or sensitive class looks for rows stamped before
#: the cutoff: this many chunks' worth of seqs (a range of the primary key, read row by row)
SWEEP_CHUNKS = 4


def sweep_for_expired(
    conn: sqlite3.Connection,
    rank: int,
    cutoff_ts: float,
    *,
    young: int,
    upto: int,
    window: int,
    swept: dict[int, int] | None = None,
) -> int | None:
    """The highest seq of class `rank` stamped before `cutoff_ts` in the next `window` seqs after
    the young row `young` (at most up to `upto`), or None. Each call takes the window after the
    last one and starts over from `young` once it reaches `upto`, so an expired row anywhere past
    a young one is found within one sweep of the class's young rows, at a cost per call of
    `window` rows whatever the journal's size (no index on ts or class: an index on `journal`
    costs the insert rate). `swept`: the caller's class -> seq the look-ahead has swept up to,
    kept between calls (the journal's own; without one each call looks right after `young`)."""
    swept = {} if swept is None else swept
    frontier = swept.get(rank, young)
    if frontier < young or frontier >= upto:
        frontier = young
    end = min(frontier + max(window, 1), upto)
    row = conn.execute(
        "SELECT max(seq) FROM journal WHERE seq > ? AND seq <= ? AND privacy = ? AND ts < ?",
        (frontier, end, rank, cutoff_ts),
    ).fetchone()
    if row[0] is not None:
        swept[rank] = int(row[0])  # the rows up to it go: sweep on after it
        return int(row[0])
    swept[rank] = end if end < upto else young
    return None


@dataclass
class LawExpiry:
    """Undelivered records of one class removed at their retention since the last report."""

    rank: int
    retention_s: float
    count: int = 0
    oldest_ts: float | None = None
    newest_ts: float | None = None

    def add(self, chunk: ClassExpiry) -> None:
        self.count += chunk.expired
        for ts in (chunk.oldest_ts, chunk.newest_ts):
            if ts is not None:
                self.oldest_ts = ts if self.oldest_ts is None else min(self.oldest_ts, ts)
                self.newest_ts = ts if self.newest_ts is None else max(self.newest_ts, ts)

    def event(self, source: str, now: float, cls: str, total: int) -> Event:
        payload = {
            "class": cls,
            "count": self.count,
            "oldest_ts": self.oldest_ts,
            "newest_ts": self.newest_ts,
            "retention_s": self.retention_s,
            "total": total,
        }
        return Event("retention_expired", source, Severity.WARNING, payload, now)


@dataclass
class CapResult:
    """What making room did inside one transaction (applied to counters only if it commits)."""

    trimmed: int = 0
    dropped: int = 0
    first: int = 0
    last: int = 0
    short_rows: int = 0  # rows still over the cap after trimming (drop_newest refuses this many)


def make_room(
    conn: sqlite3.Connection,
    *,
    incoming: int,
    max_bytes: int,
    drop_oldest: bool,
    committed: int,
    rows: int,
) -> CapResult:
    """Before inserting `incoming` rows: trim delivered history, then (drop_oldest) delete the
    oldest undelivered rows, until the estimate fits under `max_bytes`."""
    res = CapResult()
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    used = (pages - free) * page_size
    row_bytes = max(32.0, used / rows) if rows >= 1000 else 64.0
    over = used + incoming * row_bytes - max_bytes
    if over <= 0:
        return res
    need = int(over / row_bytes) + 1
    safe = lowest_cursor(conn)
    if safe is not None:
        n, _, _ = delete_head(conn, min(safe, committed), need)
        res.trimmed = n
        need -= n
    if need > 0 and drop_oldest:
        n, first, last = delete_head(conn, committed, need)
        res.dropped, res.first, res.last = n, first, last
        need -= n
    res.short_rows = max(0, need)
    return res


@dataclass
class DropBurst:
    """Consecutive drops for one reason; reported as one `buffer_drop` event when it ends."""

    reason: str  # max_bytes | disk_full | queue_overflow | shutdown
    policy: str
    started_wall: float
    started: float = field(default_factory=time.monotonic)
    last_drop: float = field(default_factory=time.monotonic)
    dropped: int = 0
    first_seq: int | None = None  # seq range of deleted rows (drop_oldest); refused rows have none
    last_seq: int | None = None
    first_ts: float | None = None  # time range of refused records (drop_newest)
    last_ts: float | None = None

    def add(self, count: int, first_seq: int | None = None, last_seq: int | None = None) -> None:
        self.dropped += count
        self.last_drop = time.monotonic()
        if first_seq is not None:
            self.first_seq = first_seq if self.first_seq is None else min(self.first_seq, first_seq)
        if last_seq is not None:
            self.last_seq = last_seq if self.last_seq is None else max(self.last_seq, last_seq)

    def quiet(self) -> bool:
        return time.monotonic() - self.last_drop >= BURST_QUIET_S

    def add_refused(self, records: list[Any]) -> None:
        if not records:
            return
        self.dropped += len(records)
        self.last_drop = time.monotonic()
        ts0, ts1 = records[0].ts, records[-1].ts
        self.first_ts = ts0 if self.first_ts is None else min(self.first_ts, ts0)
        self.last_ts = ts1 if self.last_ts is None else max(self.last_ts, ts1)

    def event(self, source: str, now: float, counters: dict[str, int]) -> Event:
        payload: dict[str, Any] = {
            "reason": self.reason,
            "policy": self.policy,
            "dropped": self.dropped,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "started": self.started_wall,
            "duration_s": round(time.monotonic() - self.started, 3),
            "totals": {
                k: counters.get(k, 0) for k in ("dropped_oldest", "dropped_newest", "dropped_overflow")
            },
        }
        return Event("buffer_drop", source, Severity.WARNING, payload, now)
