"""Whom a sensitive camera's snapshots show: the subject of its `subject_from` device's newest event.

A sensitive camera with `subject_from` watches the site's records for the events of that device
(the kiosk beside it): the subject the newest one names is whom its periodic and command
snapshots are about while that event is at most `within` old. At start the camera looks for that
event in the journal too (`DriverContext.recent_events`), so a restart does not forget it. A
`subject_erased` notice naming that subject (by the site's own pseudonym of it) ends it: no later
snapshot is attributed to an event of that subject journaled before the erasure, and a snapshot
that finds the subject's data key gone since the last one sealed under it for that event (the
notice not journaled yet) is filed under the camera's key instead, never under a fresh key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from drivers.camera.config import SubjectFrom
from edge.model import Event, Record
from edge.privacy.atrest import SITE_SUBJECT, subject_of
from edge.privacy.pseudonym import ERASED_KIND
from edge.store.blobs import BlobStore

RECALL_TIMEOUT = 10.0  # seconds the start waits for the `subject_from` device's journaled events
ERASURES_KEPT = 1024  # erasure notices a camera remembers (the site's pseudonym: when forgotten)


class SubjectWatch:
    """The subject of the newest event of `by.device`, as the hub journals them (`see`)."""

    def __init__(
        self,
        camera: str,
        by: SubjectFrom,
        blobs: BlobStore,
        clock: Callable[[], float],
        log: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.camera = camera
        self.by = by
        self.blobs = blobs
        self.clock = clock
        self.log = log
        #: (subject, ts) of the newest event of `by.device` that names a subject
        self.recent: tuple[str, float] | None = None
        #: the site's pseudonym of each subject a `subject_erased` notice named: when it was erased
        self._erased: dict[str, float] = {}
        #: (the event's ts, the data key's reference) an attributed snapshot of a subject was last
        #: sealed under: another key now (or none) for that event or an older one means the
        #: subject was forgotten since (worker threads only, one at a time: the snapshot lock)
        self._sealed_kid: dict[str, tuple[float, bytes | None]] = {}

    # ------------------------------------------------------------ on the event loop
    def see(self, records: list[Record]) -> None:
        """Hub subscriber (every journaled batch, on the hot path): keep the newest event of the
        device that names a subject, and drop it when a `subject_erased` notice names that
        subject. A batch without an event (nearly all) costs one C-level scan of its types, not a
        Python loop over its readings."""
        if Event not in set(map(type, records)):
            return
        source = self.by.device
        for r in records:
            if type(r) is not Event:
                continue
            if r.kind == ERASED_KIND:
                self._see_erasure(r)
            elif r.source == source:
                subject = subject_of(r.payload, self._private_points())
                if subject == SITE_SUBJECT or self._erased_since(subject, r.ts):
                    continue
                if self.recent is None or r.ts >= self.recent[1]:
                    self.recent = (subject, r.ts)

    async def recall(self, recent_events: Callable[[str, float], Awaitable[list[Event]]] | None) -> None:
        """At start (after subscribing: nothing falls between the two), the subject of the
        device's newest journaled event within `within`: a restarted gateway or driver goes on
        naming the resident the kiosk measured before it. A failed read leaves the snapshots
        under the camera's key until the device's next event; the camera starts."""
        if recent_events is None:
            return
        try:
            async with asyncio.timeout(RECALL_TIMEOUT):
                events: list[Record] = list(
                    await recent_events(self.by.device, self.clock() - self.by.within)
                )
        except Exception as exc:
            self.log.warning(
                "camera %s: the recent events of %s could not be read from the journal (%s: %s); "
                "snapshots name nobody until its next event",
                self.camera,
                self.by.device,
                type(exc).__name__,
                exc,
            )
            return
        self.see(events)

    def current(self) -> tuple[str, float] | None:
        """(subject, the event's ts) a periodic or command snapshot is about now: the newest
        event's, if it is no more than `within` from the clock."""
        recent = self.recent
        if recent is None or abs(self.clock() - recent[1]) > self.by.within:
            return None
        return recent

    def forgotten(self, attributed: tuple[str, float]) -> None:
        """A snapshot found the subject of `attributed` forgotten: it names nobody from now on,
        unless a newer event came in meanwhile."""
        if self.recent == attributed:
            self.recent = None

    def _private_points(self) -> Mapping[str, int]:
        """The site's personal and sensitive points (the sealer's, as the journal seals by): an
        event about one names its subject by its `value` (a plate)."""
        points = getattr(self.blobs.sealer(), "private_points", None)
        return points() if callable(points) else {}  # type: ignore[no-any-return]

    def _pseudonym(self, subject: str) -> str | None:
        """The site's own pseudonym of `subject` (what a `subject_erased` notice names), None
        without the site's keys."""
        keys = getattr(self.blobs.sealer(), "keys", None)
        named = getattr(keys, "local_pseudonym", None)
        return str(named(subject)) if callable(named) else None

    def _see_erasure(self, notice: Event) -> None:
        """A subject was forgotten: remember whom (by pseudonym) and when; the subject the camera
        files its snapshots under goes if it is that one."""
        payload = notice.payload if isinstance(notice.payload, dict) else {}
        erased = payload.get("subject")
        if not isinstance(erased, str) or not erased:
            return
        if len(self._erased) >= ERASURES_KEPT:
            self._erased.pop(next(iter(self._erased)))
        self._erased[erased] = max(notice.ts, self._erased.get(erased, notice.ts))
        recent = self.recent
        if recent is not None and self._pseudonym(recent[0]) == erased:
            self.log.info(
                "camera %s: the subject of its snapshots was forgotten; they name nobody now", self.camera
            )
            self.recent = None

    def _erased_since(self, subject: str, ts: float) -> bool:
        """An event of `subject` at `ts` was journaled before `subject` was forgotten."""
        if not self._erased:
            return False
        pseudonym = self._pseudonym(subject)
        at = self._erased.get(pseudonym) if pseudonym is not None else None
        return at is not None and ts <= at

    # ------------------------------------------------------------ in the snapshot's worker thread
    def _kid_of(self) -> Callable[[str], bytes | None] | None:
        kid_of = getattr(getattr(self.blobs.sealer(), "keys", None), "kid_of", None)
        return kid_of if callable(kid_of) else None

    def still_keyed(self, attributed: tuple[str, float]) -> bool:
        """The subject of `attributed` still has the data key a snapshot was sealed under for that
        event (or an older one), or none was sealed yet: else it was forgotten since."""
        subject, at = attributed
        known = self._sealed_kid.get(subject)
        kid_of = self._kid_of()
        return known is None or kid_of is None or at > known[0] or kid_of(subject) == known[1]

    def sealed(self, attributed: tuple[str, float]) -> None:
        """A snapshot was sealed under the key of the subject of `attributed`: remember which."""
        kid_of = self._kid_of()
        if kid_of is None:
            return
        if len(self._sealed_kid) >= ERASURES_KEPT:
            self._sealed_kid.clear()
        subject, at = attributed
        self._sealed_kid[subject] = (at, kid_of(subject))
