"""The privacy component: sealing at rest wired into a running gateway (see `plugin`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edge.model import PRIVACY_RANK, Event, Privacy, Severity
from edge.paths import sqlite_uri
from edge.plugins import ComponentContext, StartError
from edge.privacy import subjects
from edge.privacy.atrest import SITE_SUBJECT, Sealer, register, unregister
from edge.privacy.pseudonym import (
    ERASED_KIND,
    FINGERPRINT_META,
    KEY_CHANGED_KIND,
    key_changes,
    recipient_fingerprints,
)
from edge.store import space

if TYPE_CHECKING:
    from edge.privacy.keys import SubjectKeys

log = logging.getLogger("edge.privacy")

KEYS_EXPIRED_KIND = "data_keys_expired"
PERSONAL, SENSITIVE = PRIVACY_RANK[Privacy.PERSONAL], PRIVACY_RANK[Privacy.SENSITIVE]


class PrivacyStartError(StartError):
    """The site's master key cannot be used: the message names the file and what to do."""


NOTICE_INTERVAL_S = 2.0  # how soon a running gateway journals an erasure `edge privacy forget` queued
# keys.db's WAL is given back (truncated) once a burst of new subjects grew it past this: SQLite
# reuses it from its start after each checkpoint but never shrinks it, and keys.db is the only
# store beside the journal whose WAL has no size limit (its secure_delete and FULL sync are kept)
KEYS_WAL_KEEP = 1 << 20
KEYS_WAL_WAIT_MS = 200  # how long a truncation waits for the key store's own writer


def drop_trend_index(journal_path: str) -> None:
    from pathlib import Path

    from edge import paths

    trend = paths.trend_path(journal_path)
    for suffix in ("", "-wal", "-shm"):
        Path(trend + suffix).unlink(missing_ok=True)
    log.warning("trend index %s removed: it held copies of records now sealed; it is rebuilt", trend)


def key_horizon(retention_s: Mapping[int, float | None]) -> float | None:
    """How long after its last seal a data key is kept: the longer of the personal and sensitive
    retentions (a key may have sealed records, snapshot files and dead letters of both); None,
    keys never expire, when either class is kept without a time limit."""
    personal, sensitive = retention_s.get(PERSONAL), retention_s.get(SENSITIVE)
    if personal is None or sensitive is None:
        return None
    return max(personal, sensitive)


class KeyExpiry:
    """The journal's expirer for the data keys (`Journal.add_expirer`): run in its writer thread
    with the retention passes the clock guard lets through, it deletes every key whose last seal
    is more than the horizon ago (`SubjectKeys.expire`) and returns one `data_keys_expired` event
    (counts only, never a subject) when some went."""

    def __init__(self, keys: SubjectKeys, source: str) -> None:
        self.keys = keys
        self.source = source
        self.expired = 0  # keys deleted since start
        self.active = True  # off once the component stopped: the journal may still run a pass

    def __call__(self, now: float, retention_s: Mapping[int, float | None]) -> list[Event]:
        horizon = key_horizon(retention_s)
        if horizon is None or not self.active:
            return []
        n = self.keys.expire(now - horizon, keep=(SITE_SUBJECT,))
        if not n:
            return []
        self.expired += n
        log.info("%d data keys expired: nothing they sealed is younger than %.0f s", n, horizon)
        payload = {"count": n, "horizon_s": horizon}
        return [Event(KEYS_EXPIRED_KIND, self.source, Severity.INFO, payload, now)]


class PrivacyComponent:
    name = "privacy"

    def __init__(self, ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.sealer: Sealer | None = None
        self.sealed_existing = 0
        self.notices = 0
        self._task: asyncio.Task[None] | None = None
        self._blob_dir: str | None = None
        self.key_expiry: KeyExpiry | None = None
        self._stopped = False  # the journal may still ask for keys.db's WAL after the stop
        self.latest_erased = 0  # latest values of private points erased by a running forget
        self.keys_wal_given_back = 0

    async def start(self) -> None:
        from edge.privacy.keyfile import KeyFileError
        from edge.privacy.keys import WrongMasterKey

        site, journal = self.ctx.site, self.ctx.journal
        key_file = site.privacy.master_key_file
        assert key_file is not None
        try:
            # the dead letters and the snapshots are sealed data too: a keys.db gone while they
            # exist is refused, not created empty
            sealer = await asyncio.to_thread(
                Sealer.open,
                journal.path,
                key_file,
                journal.clock,
                state_path=self.ctx.state.path,
                blob_dir=site.storage.resolved_blob_dir(),
            )
        except KeyFileError as exc:
            raise PrivacyStartError(f"privacy.master_key_file: {exc}") from None
        except WrongMasterKey as exc:
            raise PrivacyStartError(f"privacy.master_key_file {key_file}: {exc}") from None
        self.sealer = sealer
        sealer.classes = journal.classes  # which dead letters are sensitive
        journal.attach_sealer(sealer)  # the journal closes it, after its last flush
        # a key goes once everything it sealed is past its retention (by the journal's clock guard)
        self.key_expiry = KeyExpiry(sealer.keys, site.site.id)
        journal.add_expirer(self.key_expiry)
        register(self.ctx.state.path, sealer)  # dead letters
        self._blob_dir = site.storage.resolved_blob_dir()
        register(self._blob_dir, sealer)  # a sensitive camera's snapshots, and the API that serves them
        # keys.db grows with every new subject on the journal's filesystem: the gateway's own
        # space, not another program's, and its WAL given back when the journal holds for space
        journal.add_own_space(self.keys_bytes)
        journal.add_space_reclaimer(self.give_keys_wal_back)
        self.sealed_existing = await journal.seal_existing()
        # the trend index copied those events in clear: it is derived data, rebuilt (from the
        # sealed journal) by its component, which starts after this one. The journal marks it
        # stale in the sealing's first transaction, so a start killed before the drop drops it at
        # the next start, which has nothing left to seal
        if self.sealed_existing or await asyncio.to_thread(journal.trend_index_stale):
            await asyncio.to_thread(drop_trend_index, journal.path)
            try:
                await asyncio.to_thread(journal.trend_index_dropped)
            except sqlite3.Error as exc:  # a full disk, say: the next start drops it again, no harm
                log.warning("privacy: the trend index's drop is not recorded yet: %s", exc)
        await self.restore_sensitive()
        await self.journal_notices()
        await self.note_pseudonym_keys()
        self._task = self.ctx.spawn(self._watch(), "privacy-notices")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.key_expiry is not None:
            self.key_expiry.active = False
        self._stopped = True
        if self.sealer is not None:
            unregister(self.ctx.state.path, self.sealer)
            if self._blob_dir is not None:
                unregister(self._blob_dir, self.sealer)

    def status(self) -> dict[str, Any]:
        return {
            "encrypted_at_rest": self.sealer is not None,
            "sealed": self.sealer.sealed if self.sealer is not None else 0,
            "sealed_existing": self.sealed_existing,
            "erasures_journaled": self.notices,
            "keys_expired": self.key_expiry.expired if self.key_expiry is not None else 0,
            "latest_erased": self.latest_erased,
            "keys_wal_given_back": self.keys_wal_given_back,
        }

    def keys_bytes(self) -> int:
        """What keys.db and its WAL hold on the journal's filesystem (`Journal.add_own_space`)."""
        sealer = self.sealer
        if sealer is None:
            return 0
        return space.db_bytes(sealer.keys.path)

    def give_keys_wal_back(self, keep: int = 0) -> bool:
        """Truncate keys.db's WAL when it holds more than `keep` bytes, from a connection of its
        own (the key store's writer is not disturbed: a busy store is tried again later). Asked
        by the journal when it holds for space (`add_space_reclaimer`, its writer thread) and,
        with KEYS_WAL_KEEP, after a burst of new subjects. True when the WAL was truncated."""
        sealer = self.sealer
        if sealer is None or self._stopped:
            return False
        path = sealer.keys.path
        if space.file_size(path + "-wal") <= keep:
            return False
        # mode=rw: a keys.db removed under the running gateway is not created anew here
        conn = sqlite3.connect(sqlite_uri(path, "rw"), uri=True, isolation_level=None, timeout=0)
        try:
            conn.execute(f"PRAGMA busy_timeout={KEYS_WAL_WAIT_MS}")
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        if busy:
            return False
        self.keys_wal_given_back += 1
        return True

    async def restore_sensitive(self) -> int:
        """The newest values of private points, read again now that they open: the runtime took
        the journal's newest readings before this component started, when a sealed value read as
        null. Returns how many points were restored."""
        hub = self.ctx.hub
        secret = set(hub.private_ranks)  # sensitive points, and personal ones' strings
        if not secret:
            return 0
        last, good = await asyncio.to_thread(self.ctx.journal.last_readings)
        restored = [r for p, r in last.items() if p in secret]
        for r in restored:
            seen = hub.latest.get(r.point)
            if seen is not None and seen.value is None:
                del hub.latest[r.point]
        hub.restore_latest(restored)
        if isinstance(self.ctx.restored_good, dict):  # what the rules, which start next, take as latest
            self.ctx.restored_good.update({p: r for p, r in good.items() if p in secret})
        return len(restored)

    async def journal_notices(self) -> int:
        """Journal every erasure notice queued by `edge privacy forget` as a subject_erased event;
        before it, the latest values that name the erased subject read as erased (`erase_latest`)."""
        state = self.ctx.state
        pending = await asyncio.to_thread(subjects.pending_notices, state)
        for _id, ts, payload in pending:
            erased = payload.get("subject")
            if isinstance(erased, str):
                self.latest_erased += self.erase_latest(erased)
            self.ctx.hub.publish_event(Event(ERASED_KIND, self.ctx.site.site.id, Severity.INFO, payload, ts))
        if pending:
            await self.ctx.journal.flush()
            await asyncio.to_thread(subjects.mark_journaled, state, [p[0] for p in pending])
            self.notices += len(pending)
            log.info("journaled %d subject_erased notices", len(pending))
        return len(pending)

    def erase_latest(self, subject_pseudonym: str) -> int:
        """Make every private point whose latest value is the subject the site names
        `subject_pseudonym` (`SubjectKeys.local_pseudonym`, as an erasure notice names it) read
        as erased, in the hub and in the newest readings the rules took at start. Returns how
        many points."""
        sealer = self.sealer
        if sealer is None:
            return 0
        hub, keys = self.ctx.hub, sealer.keys
        private = hub.private_ranks
        named = [
            point
            for point, r in list(hub.latest.items())
            if point in private
            and type(r.value) is str
            and r.value
            and keys.local_pseudonym(r.value) == subject_pseudonym
        ]
        n = hub.erase_latest(named)
        good = self.ctx.restored_good
        if isinstance(good, dict):
            for point in named:
                r = good.get(point)
                if r is not None:
                    good[point] = r._replace(value=None)
        if n:
            log.info("%d latest values named an erased subject and read as erased", n)
        return n

    async def note_pseudonym_keys(self) -> int:
        """See `note_pseudonym_keys` (the module's)."""
        return await note_pseudonym_keys(self.ctx)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(NOTICE_INTERVAL_S)
            try:
                await self.journal_notices()
            except Exception as exc:  # the state DB busy or failing: try again next time
                log.warning("privacy: erasure notices not journaled yet: %s", exc)
            try:
                await asyncio.to_thread(self.give_keys_wal_back, KEYS_WAL_KEEP)
            except sqlite3.Error as exc:  # busy or failing: tried again next time
                log.warning("privacy: %s could not give its WAL back: %s", self._keys_path(), exc)

    def _keys_path(self) -> str:
        return self.sealer.keys.path if self.sealer is not None else "keys.db"


async def note_pseudonym_keys(ctx: ComponentContext) -> int:
    """Journal one `pseudonym_key_changed` event (and log a warning) per sink or consumer whose
    pseudonym key is not the one of the previous start: every pseudonym it receives changes
    with it, those of records journaled before and not yet delivered included. The
    fingerprints are kept in the journal's meta; the first start that sees a recipient
    records its key without an event. Returns how many changed."""
    site, journal = ctx.site, ctx.journal
    recipients = [(f"upstream {s.id}", getattr(s, "pseudonymise", None)) for s in site.upstream]
    recipients += [(f"consumer {c.id}", c.pseudonymise) for c in site.consumers]
    now = await asyncio.to_thread(recipient_fingerprints, recipients)
    if not now:
        return 0

    def recorded() -> dict[str, str | None]:
        return {what: journal.meta(FINGERPRINT_META + what) for what in now}

    try:
        changes = key_changes(now, await asyncio.to_thread(recorded))
    except sqlite3.Error as exc:  # the journal busy or failing: checked at the next start
        log.warning("privacy: the recipients' pseudonym keys were not checked: %s", exc)
        return 0
    for change in changes:
        log.warning(
            "%s: its pseudonym key changed since the last start (fingerprint %s, was %s): every "
            "pseudonym it receives from now on differs from those it received before, records "
            "journaled before and not yet delivered included; if that was not meant, put the "
            "previous key back",
            change["recipient"],
            change["fingerprint"],
            change["previous_fingerprint"],
        )
        ctx.hub.publish_event(Event(KEY_CHANGED_KIND, site.site.id, Severity.WARNING, change))
    if changes:
        await journal.flush()  # the events before the new fingerprints: a crash repeats them
    try:
        await asyncio.to_thread(journal.set_meta, {FINGERPRINT_META + w: fp for w, fp in now.items()})
    except sqlite3.Error as exc:  # not recorded: the next start says the same again
        log.warning("privacy: the recipients' pseudonym keys were not recorded: %s", exc)
    return len(changes)


class PseudonymKeyWatch:
    """A site without a master key still has pseudonym keys: this component alone notes their
    changes at start (`note_pseudonym_keys`)."""

    name = "privacy"

    def __init__(self, ctx: ComponentContext) -> None:
        self.ctx = ctx
        self.changed = 0

    async def start(self) -> None:
        self.changed = await note_pseudonym_keys(self.ctx)

    async def stop(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"encrypted_at_rest": False, "pseudonym_keys_changed": self.changed}
