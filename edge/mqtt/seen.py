"""The request ids an MQTT sink took (`commands: true`), each with what it asked and, once given,
its answer: kept for twice the sink's `command_ttl` in memory and in the state DB (table
`mqtt_requests`), so that a replay is refused and the same request sent again gets its answer
again, across a restart of the gateway too (`edge.mqtt.commands`).

An answer about a `personal` or `sensitive` point quotes the value written (a resident's card
holder, a plate), so it is never stored in clear: with a master key it is sealed, with the digest
of what was asked, under the data key of that value (`edge.privacy.atrest`, through the sealer
registered for the state DB), so a `forget` of the value shreds it; without one only its status is
kept, its value given back from the request sent again when the first answer's value was the one
asked. Public answers are kept as they are. Rows leave the table once past the window, on a timer
(`prune`), not only when the next request arrives."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson

from edge.audit import written_reason
from edge.mqtt.config import MAX_COMMAND_TTL
from edge.store.rows import sealer_for

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
    # an answer about a personal or sensitive point: sealed (fingerprint and answer NULL), or, with
    # no key to seal it, its status only (the value NULL; value_as_asked 1 when it was the value
    # the request asked, given back from the request sent again)
    """
    ALTER TABLE mqtt_requests ADD COLUMN sealed BLOB;
    ALTER TABLE mqtt_requests ADD COLUMN value_as_asked INTEGER;
    """,
]


def prune(state: StateDB, sink: str, ttl: float, now: float) -> float | None:
    """Delete `sink`'s requests taken more than 2 × `ttl` before `now`, and any sink's past the
    longest window a sink may have (a sink removed, or whose commands were turned off, leaves
    its rows behind); the time the oldest of `sink`'s left was taken, None when none is (or
    there is no table). Blocking."""
    with state.lock:
        conn = state.conn
        try:
            conn.execute("DELETE FROM mqtt_requests WHERE sink=? AND at<?", (sink, now - 2 * ttl))
            conn.execute("DELETE FROM mqtt_requests WHERE at<?", (now - 2 * MAX_COMMAND_TTL,))
            row = conn.execute("SELECT min(at) FROM mqtt_requests WHERE sink=?", (sink,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # this site never took a request
                return None
            raise
    return None if row[0] is None else float(row[0])


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

    def prune(self, now: float) -> float | None:
        """Forget the requests past the window, in memory and in the state DB (`prune`); when the
        oldest one left was taken, None when none is. Blocking: run it in a thread."""
        with self._lock:
            if not self._loaded:
                self._load(now)
            self._forget_old(now)
            if self.state is None:
                return next(iter(self.ids.values()), None)
            return prune(self.state, self.sink, self.ttl, now)

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

    def stored(self, rid: str, fingerprint: str, asked: Any, now: float) -> dict[str, Any] | None:
        """The answer given to `rid` within the replay window, when the request sent again is the
        same (same point and value `asked`); None otherwise: never taken, taken by a different
        request, its write not done yet, or its answer sealed under a key this process does not
        hold (a forgotten value's). Blocking: run it in a thread."""
        with self._lock:
            if not self._known(rid, now):
                return None
            if self.state is None:
                kept = self.kept.get(rid)
                if kept is None or kept[0] != fingerprint or kept[1] is None:
                    return None
                answer: dict[str, Any] = orjson.loads(kept[1])
                return answer
            with self.state.lock:
                row = self.state.conn.execute(
                    "SELECT fingerprint, answer, sealed, value_as_asked FROM mqtt_requests "
                    "WHERE sink=? AND id=?",
                    (self.sink, rid),
                ).fetchone()
        if row is None:
            return None
        kept_fingerprint, body, sealed, value_as_asked = row
        if sealed is not None:
            return self._opened(rid, bytes(sealed), fingerprint)
        if body is None or kept_fingerprint not in (fingerprint, self._salted(rid, fingerprint)):
            return None
        answer = orjson.loads(body)
        if value_as_asked:
            answer["value"] = asked
        return answer

    def answered(
        self, rid: str, body: bytes, fingerprint: str, asked: Any, privacy: str | None = None
    ) -> None:
        """Keep the answer `body` given to `rid`, which asked `asked` (its digest `fingerprint`).
        `privacy`: the point's class; the answer to a `personal` or `sensitive` one is sealed, or
        kept without its value and reason. Blocking: run it in a thread."""
        with self._lock:
            if self.state is None:
                if rid in self.ids:
                    self.kept[rid] = (self.kept.get(rid, ("", None))[0], body)
                return
            if privacy in (None, "public"):
                stored: tuple[Any, ...] = (fingerprint, body, None, None)
            else:
                stored = self._private(rid, body, fingerprint, asked, privacy)
            with self.state.lock:
                self.state.conn.execute(
                    "UPDATE mqtt_requests SET fingerprint=?, answer=?, sealed=?, value_as_asked=? "
                    "WHERE sink=? AND id=?",
                    (*stored, self.sink, rid),
                )

    def _private(self, rid: str, body: bytes, fingerprint: str, asked: Any, privacy: str) -> tuple[Any, ...]:
        """(fingerprint, answer, sealed, value_as_asked) of an answer about a personal or sensitive
        point: sealed under the data key of its value when this process seals for the state DB,
        else its status with the value and the reason (which may quote it) left out."""
        answer = orjson.loads(body)
        value = answer.get("value")
        sealer = sealer_for(self.state.path) if self.state is not None else None
        if sealer is not None:
            named = next((v for v in (value, asked) if type(v) is str and v), None)
            text = orjson.dumps({"fingerprint": fingerprint, "answer": orjson.Fragment(body)}).decode()
            envelope = sealer.seal_payload(
                {} if named is None else {"subject": named}, text, 0.0, self._where(rid)
            )
            return None, None, envelope, None
        as_asked = fingerprint_of(str(answer.get("point")), value) == fingerprint
        answer.update(value=None, reason=written_reason(privacy, str(answer.get("reason") or "")))
        return self._salted(rid, fingerprint), orjson.dumps(answer), None, int(as_asked)

    def _opened(self, rid: str, sealed: bytes, fingerprint: str) -> dict[str, Any] | None:
        sealer = sealer_for(self.state.path) if self.state is not None else None
        if sealer is None:
            return None
        try:
            kept = orjson.loads(sealer.open_text(sealed, "payload", 0.0, self._where(rid)))
        except (LookupError, ValueError):  # its value forgotten, or sealed by another key store
            return None
        if kept.get("fingerprint") != fingerprint:
            return None
        answer: dict[str, Any] = kept["answer"]
        return answer

    def _where(self, rid: str) -> str:
        """What a sealed answer is bound to: it opens only as this sink's answer to `rid`."""
        return f"mqtt request\x00{self.sink}\x00{rid}"

    def _salted(self, rid: str, fingerprint: str) -> str:
        """The digest kept of what a request to a private point asked, without a key to seal it:
        bound to the sink and the request id, so that two requests writing the same value do not
        carry the same digest."""
        return hashlib.sha256(f"{self.sink}\x00{rid}\x00{fingerprint}".encode()).hexdigest()

    def take(self, rid: str, now: float, fingerprint: str = "", private: bool = False) -> bool:
        """Record `rid` as taken; False if it was taken within the TTL (a replay). `private`: it
        writes a personal or sensitive point, whose digest is kept only with its answer. Blocking:
        run it in a thread."""
        with self._lock:
            return self._take(rid, now, fingerprint, private)

    def _take(self, rid: str, now: float, fingerprint: str, private: bool) -> bool:
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
                        (self.sink, rid, now, None if private else fingerprint),
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
