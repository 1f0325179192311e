"""The filters every sink and pull consumer applies before a record leaves the site: include
lists and privacy minimisation. (Their rows come from `edge.store.reader.JournalReader`.)

Privacy rule (documented in docs/sync.md): a reading has its point's privacy class; an event has
the class named by `payload["privacy"]` if present, else the class of `payload["point"]` if that
point is known, else `sensitive` for health-measurement kinds, else `public`. A record whose class
ranks above the sink's or consumer's `max_privacy` (default `personal`) is withheld.

What passes is then shaped for its recipient (`RecordShaper`): the identifying payload fields of
an event (edge.privacy.pseudonym.DEFAULT_FIELDS, plus the recipient's `pseudonymise.fields`) and
the string values of `personal` and `sensitive` points become the recipient's own pseudonyms, or
are withheld (null, with a `<field>_withheld` marker) from a recipient without a pseudonym key.
Only the fields a recipient names in `pseudonymise.clear` leave as they are.
"""

from __future__ import annotations

import fnmatch
import operator
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from edge.model import PRIVACY_RANK, PointInfo, Privacy, event_privacy
from edge.privacy.pseudonym import DEFAULT_FIELDS, Pseudonymiser, withhold_payload
from edge.store.reader import Row

_KIND = operator.itemgetter(5)


class IncludeConfig(BaseModel):
    """What a sink sends: readings and/or events, event kinds and point patterns (fnmatch)."""

    model_config = ConfigDict(extra="forbid")

    readings: bool = True
    events: bool = True
    event_kinds: list[str] | None = None  # e.g. [alert, "device_*"]; None = every kind
    points: list[str] | None = None  # e.g. ["meter-*.energy_*"]; None = every point


def _pattern(globs: Sequence[str] | None) -> re.Pattern[str] | None:
    if globs is None:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs) or "(?!)")


class RecordFilter:
    """Decides per journal row whether it may be sent; counts what it withholds and why."""

    def __init__(
        self,
        include: IncludeConfig,
        max_privacy: Privacy | str,
        points: Callable[[], Mapping[str, PointInfo]],
        version: Callable[[], int] | None = None,
    ) -> None:
        self.include = include
        self.max_rank = PRIVACY_RANK[Privacy(max_privacy)]
        self._points = points
        self._version = version
        self._kinds = _pattern(include.event_kinds)
        self._point_re = _pattern(include.points)
        self._reading_ok: dict[str, int] = {}
        self._withheld_key: tuple[int, int, int] | None = None
        self._count_lock = threading.Lock()
        self._withheld: set[str] = set()
        self.withheld_privacy = 0  # records kept on site because of their privacy class
        self.withheld_filter = 0  # records not matching the include lists
        self.passthrough = (
            include.readings
            and include.events
            and self._kinds is None
            and self._point_re is None
            and self.max_rank >= PRIVACY_RANK[Privacy.SENSITIVE]
        )

    def _reading_verdict(self, point: str) -> int:
        """0: allowed, 1: not in the include list, 2: withheld for privacy."""
        verdict = self._reading_ok.get(point)
        if verdict is not None:
            return verdict
        if self._point_re is not None and not self._point_re.match(point):
            self._reading_ok[point] = 1
            return 1
        info = self._points().get(point)
        rank = PRIVACY_RANK[info.privacy] if info is not None else 0
        verdict = 0 if rank <= self.max_rank else 2
        if info is not None:  # unknown points may get a class later (a driver registers them)
            self._reading_ok[point] = verdict
        return verdict

    def event_privacy(self, kind: str, payload: str | None) -> int:
        data: Any = None
        if payload and ('"privacy"' in payload or '"point"' in payload):  # skip parsing the rest
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                data = None
        return PRIVACY_RANK[event_privacy(kind, data, self._points())]

    def verdict(self, row: Row) -> int:
        """0: send, 1: not in the include lists, 2: withheld for privacy."""
        kind = row[5]
        if kind is None:
            return self._reading_verdict(row[2]) if self.include.readings else 1
        if not self.include.events or (self._kinds is not None and not self._kinds.match(kind)):
            return 1
        return 2 if self.event_privacy(kind, row[7]) > self.max_rank else 0

    def refresh(self) -> set[str]:
        """Registered points above the privacy limit, recomputed whenever a point is registered
        (`version`: a rule's `set:` point rises to a private class at once); without `version`,
        when the point set changes and every few seconds. Called on the event loop (which alone
        registers points) before a page is filtered in a thread, the classes are read whole."""
        points = self._points()
        ver = self._version() if self._version is not None else int(time.monotonic() / 5)
        key = (id(points), len(points), ver)
        if key != self._withheld_key:
            # a copy (one C call): a thread must not iterate the dict the loop may be growing
            snapshot = dict(points)
            self._withheld = {
                pid for pid, info in snapshot.items() if PRIVACY_RANK[info.privacy] > self.max_rank
            }
            self._reading_ok = {}
            self._withheld_key = key
        return self._withheld

    def apply(self, rows: list[Row]) -> list[Row]:
        """The rows that may leave the site. Thread-safe (two batch builders share a filter)."""
        if self.passthrough:
            return rows
        withheld = self.refresh()
        if self.include.readings and self._point_re is None and not withheld:
            # the common case: every reading passes; a batch without events passes whole
            # (the kinds are counted in C: a generator over 10,000 rows took ~1 ms a page)
            if list(map(_KIND, rows)).count(None) == len(rows):
                return rows
        verdict = self.verdict
        kept = []
        counts = [0, 0, 0]
        for r in rows:
            v = verdict(r)
            counts[v] += 1
            if v == 0:
                kept.append(r)
        if counts[1] or counts[2]:
            with self._count_lock:
                self.withheld_filter += counts[1]
                self.withheld_privacy += counts[2]
        return kept


_PERSONAL_RANK = PRIVACY_RANK[Privacy.PERSONAL]


class RecordShaper:
    """What one recipient sees of the rows it may receive: identifying event fields and personal
    string points' values as its pseudonyms (`pseudonymiser`), or withheld when it has no key.
    Thread-safe: it keeps no state between rows but a cache of field names per event kind."""

    def __init__(
        self,
        pseudonymiser: Pseudonymiser | None,
        points: Callable[[], Mapping[str, PointInfo]],
        version: Callable[[], int] | None = None,
    ) -> None:
        self.pseudonymiser = pseudonymiser
        self._points = points
        self._version = version
        self._fields: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {}
        self._personal: frozenset[str] = frozenset()
        self._personal_key: tuple[int, int, int] | None = None

    def personal_points(self) -> frozenset[str]:
        """Registered points of class `personal` or above, recomputed as RecordFilter.refresh
        does (whenever a point is registered or rises to a private class)."""
        points = self._points()
        ver = self._version() if self._version is not None else int(time.monotonic() / 5)
        key = (id(points), len(points), ver)
        if key != self._personal_key:
            snapshot = dict(points)  # one C call: the loop may be growing the dict
            self._personal = frozenset(
                pid for pid, info in snapshot.items() if PRIVACY_RANK[info.privacy] >= _PERSONAL_RANK
            )
            self._personal_key = key
        return self._personal

    def fields_for(self, kind: str) -> frozenset[str]:
        """The payload fields of an event of `kind` this recipient gets as pseudonyms (or withheld)."""
        return self._kind(kind)[0]

    def _kind(self, kind: str) -> tuple[frozenset[str], tuple[str, ...]]:
        found = self._fields.get(kind)
        if found is None:
            p = self.pseudonymiser
            names = p.config.fields_for(kind) if p is not None else frozenset(DEFAULT_FIELDS.get(kind, ()))
            # the quoted names, to skip parsing a payload that holds none of them
            found = (names, tuple(orjson.dumps(n).decode() for n in sorted(names)))
            self._fields[kind] = found
        return found

    def payload(self, kind: str, payload: str | None) -> str | None:
        """A payload's JSON text as this recipient may see it."""
        names, quoted = self._kind(kind)
        if not names or not payload or not any(q in payload for q in quoted):
            return payload
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return payload
        if not isinstance(data, dict):
            return payload
        p = self.pseudonymiser
        shaped = p.payload(kind, data) if p is not None else withhold_payload(data, names)
        return orjson.dumps(shaped).decode()

    def value(self, point: str, value: Any) -> Any:
        """A reading's value as this recipient may see it: a personal string point's as a pseudonym
        (or null without a key)."""
        if type(value) is not str:
            return value
        info = self._points().get(point)
        if info is None or PRIVACY_RANK[info.privacy] < _PERSONAL_RANK:
            return value
        return self.pseudonymiser.value(value) if self.pseudonymiser is not None else None

    def apply(self, rows: list[Row]) -> list[Row]:
        """The rows as this recipient may see them (new tuples where something was replaced)."""
        personal = self.personal_points()
        if not personal and list(map(_KIND, rows)).count(None) == len(rows):
            return rows  # the common batch: public readings only (counted in C)
        out = rows
        for i, row in enumerate(rows):
            if row[5] is None:
                if row[2] not in personal or type(row[3]) is not str:
                    continue
                p = self.pseudonymiser
                new: Row = (*row[:3], p.value(row[3]) if p is not None else None, *row[4:])
            else:
                payload = self.payload(row[5], row[7])
                if payload is row[7]:
                    continue
                new = (*row[:7], payload)
            if out is rows:
                out = list(rows)
            out[i] = new
        return out
