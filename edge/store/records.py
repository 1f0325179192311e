"""The filters every sink and pull consumer applies before a record leaves the site: include
lists and privacy minimisation. (Their rows come from `edge.store.reader.JournalReader`.)

Privacy rule (documented in docs/sync.md): a reading has its point's privacy class; an event has
the class named by `payload["privacy"]` if present, else the class of `payload["point"]` if that
point is known, else `sensitive` for health-measurement kinds, else `public`. A record whose class
ranks above the sink's or consumer's `max_privacy` (default `personal`) is withheld.

What passes is then shaped for its recipient (edge.privacy.pseudonym.RecordShaper): the
identifying payload fields of an event (DEFAULT_FIELDS there, plus the recipient's `fields:`) and
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


def _point_rank(info: PointInfo | None) -> int:
    """A reading's rank: its point's class; an unknown point's readings are public."""
    return PRIVACY_RANK[info.privacy] if info is not None else 0


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
        verdict = 0 if _point_rank(info) <= self.max_rank else 2
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

    def rank(self, row: Row) -> int:
        """The privacy rank (`PRIVACY_RANK`) of a journal row by the rule above, whatever this
        filter's include lists and limit: a reading its point's class (public while the point is
        unknown), an event the class `event_privacy` gives. Reads the points: call it on the event
        loop, or where a thread may read the hub's points (the journal's writer does)."""
        kind = row[5]
        if kind is None:
            return _point_rank(self._points().get(row[2]))
        return self.event_privacy(kind, row[7])

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
