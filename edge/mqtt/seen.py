"""The request ids an MQTT sink took (`commands: true`), each with what it asked and, once given,
its answer: kept for twice the sink's `command_ttl` in memory and in the state DB (table
`mqtt_requests`), so that a replay is refused and the same request sent again gets its answer
again, across a restart of the gateway too (`edge.mqtt.commands`)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from edge.state import StateDB

REMEMBERED = 100_000  # request ids kept for replay detection (each for command_ttl at most)

# request ids taken, per sink, so a replay after a restart within the TTL is still a replay
SEEN_SCHEMA = [
    """
    CREATE TABLE mqtt_requests (
        sink TEXT NOT NULL,
        id   TEXT NOT NULL,
        at   REAL NOT NULL,        -- unix time the request was taken
        PRIMARY KEY (sink, id)
    ) WITHOUT ROWID;
    CREATE INDEX mqtt_requests_at ON mqtt_requests(at);
    """,
    # the answer given to each request, so a re-sent one gets it again (its first may be lost)
    """
    ALTER TABLE mqtt_requests ADD COLUMN fingerprint TEXT;
    ALTER TABLE mqtt_requests ADD COLUMN answer BLOB;
    """,
]


class SeenRequests:
    """The request ids a sink took within twice its TTL, in memory and in the state DB, each with
    what it asked (point and value) and, once given, its answer.

    An id is stored before its write runs: a crash between the two loses the write, never repeats
    it. Without a state DB (a test's bare context) the ids live in memory only."""

    def __init__(self, state: StateDB | None, sink: str, ttl: float) -> None:
        self.state = state
        self.sink = sink
        self.ttl = ttl
        self.ids: OrderedDict[str, float] = OrderedDict()  # request id -> when it arrived
        self._loaded = state is None
        # requests run concurrently (one at a time per device), each check in its own thread
        self._lock = threading.Lock()
        # without a state DB: request id -> (fingerprint, answer)
        self.kept: dict[str, tuple[str, bytes | None]] = {}

    def _load(self, now: float) -> None:
        assert self.state is not None
        self.state.migrate("mqtt", SEEN_SCHEMA)
        with self.state.lock:
            rows = self.state.conn.execute(
                "SELECT id, at FROM mqtt_requests WHERE sink=? AND at>=? ORDER BY at",
                (self.sink, now - 2 * self.ttl),
            ).fetchall()
        for rid, at in rows[-REMEMBERED:]:
            self.ids[rid] = at
        self._loaded = True

    def _forget_old(self, now: float) -> None:
        horizon = now - 2 * self.ttl
        while self.ids and (next(iter(self.ids.values())) < horizon or len(self.ids) > REMEMBERED):
            rid, _ = self.ids.popitem(last=False)
            self.kept.pop(rid, None)

    def known(self, rid: str, now: float) -> bool:
        """Whether `rid` was taken within the TTL (a replay), taking nothing. Blocking the first
        time (it reads the state DB): run it in a thread."""
        with self._lock:
            return self._known(rid, now)

    def _known(self, rid: str, now: float) -> bool:
        if not self._loaded:
            self._load(now)
        self._forget_old(now)
        return rid in self.ids

    def stored(self, rid: str, fingerprint: str, now: float) -> dict[str, Any] | None:
        """The answer given to `rid` within the replay window, when the request sent again is the
        same (same point and value); None otherwise: never taken, taken by a different request,
        or its write not done yet. Blocking: run it in a thread."""
        with self._lock:
            if not self._known(rid, now):
                return None
            if self.state is None:
                kept = self.kept.get(rid)
            else:
                with self.state.lock:
                    kept = self.state.conn.execute(
                        "SELECT fingerprint, answer FROM mqtt_requests WHERE sink=? AND id=?",
                        (self.sink, rid),
                    ).fetchone()
        if kept is None or kept[0] != fingerprint or kept[1] is None:
            return None
        answer: dict[str, Any] = orjson.loads(kept[1])
        return answer

    def answered(self, rid: str, answer: bytes) -> None:
        """Keep the answer given to `rid`. Blocking: run it in a thread."""
        with self._lock:
            if self.state is None:
                if rid in self.ids:
                    self.kept[rid] = (self.kept.get(rid, ("", None))[0], answer)
                return
            with self.state.lock:
                self.state.conn.execute(
                    "UPDATE mqtt_requests SET answer=? WHERE sink=? AND id=?", (answer, self.sink, rid)
                )

    def take(self, rid: str, now: float, fingerprint: str = "") -> bool:
        """Record `rid` as taken; False if it was taken within the TTL (a replay). Blocking: run
        it in a thread."""
        with self._lock:
            return self._take(rid, now, fingerprint)

    def _take(self, rid: str, now: float, fingerprint: str) -> bool:
        if self._known(rid, now):
            return False
        self.ids[rid] = now
        if self.state is None:
            self.kept[rid] = (fingerprint, None)
        else:
            with self.state.lock:
                self.state.conn.execute("BEGIN IMMEDIATE")
                try:
                    self.state.conn.execute(
                        "INSERT OR REPLACE INTO mqtt_requests(sink, id, at, fingerprint) VALUES(?, ?, ?, ?)",
                        (self.sink, rid, now, fingerprint),
                    )
                    self.state.conn.execute(
                        "DELETE FROM mqtt_requests WHERE sink=? AND at<?", (self.sink, now - 2 * self.ttl)
                    )
                    self.state.conn.execute("COMMIT")
                except BaseException:
                    if self.state.conn.in_transaction:  # a failed COMMIT has rolled back already
                        self.state.conn.execute("ROLLBACK")
                    raise
        return True


def fingerprint_of(point: str, value: Any) -> str:
    """What a request asked, to tell the same request sent again from another with its id; a
    digest, so the state DB does not hold the value under it."""
    try:
        asked = orjson.dumps([point, value])
    except (TypeError, orjson.JSONEncodeError):
        asked = repr((point, value)).encode()
    return hashlib.sha256(asked).hexdigest()
