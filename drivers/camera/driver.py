"""The camera driver: one capture thread, a watchdog, analysis at a low rate, snapshots as blobs.

The event loop never touches OpenCV: the capture thread keeps the latest frame; analysis,
redaction and JPEG encoding run in worker threads (OpenCV releases the GIL). The watch loop
ticks a few times a second: it reports `fps` and `frames`, judges health from the age of the
latest frame, runs an analysis when one is due and takes periodic snapshots.

A sensitive camera with `subject_from` watches the site's records for the events of that device
(the kiosk beside it): the subject the newest one names is whom its periodic and command
snapshots are about while that event is at most `within` old. At start the camera looks for that
event in the journal too (`DriverContext.recent_events`), so a restart does not forget it. A
`subject_erased` notice naming that subject (by the site's own pseudonym of it) ends it: no later
snapshot is attributed to a measurement of that subject journaled before the erasure, and a
snapshot that finds the subject's data key gone since the last one sealed under it is filed under
the camera's key instead, before the notice arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import cv2

from drivers.camera.analysis import ZoneAnalyser
from drivers.camera.capture import Frame, FrameSource
from drivers.camera.config import CameraDevice
from drivers.camera.points import COMMANDS, zone_point
from drivers.camera.redact import redact
from edge.driver import BaseDriver, DriverContext, Snapshots
from edge.model import (
    CommandResult,
    CommandStatus,
    Event,
    HealthState,
    PointInfo,
    Privacy,
    Quality,
    Reading,
    Record,
    Severity,
    Value,
    point_id,
)
from edge.privacy.atrest import SITE_SUBJECT, subject_of
from edge.privacy.pseudonym import ERASED_KIND
from edge.store.blobs import CAMERA_KEY, BlobSealError

TICK = 0.2  # seconds between watchdog/analysis checks
FPS_EVERY = 1.0  # seconds between fps/frames readings
FAILURE_EVENT_EVERY_S = 60.0  # at most one snapshot_failed event a minute per camera
RECALL_TIMEOUT = 10.0  # seconds the start waits for the `subject_from` device's journaled events
STOP_SNAPSHOTS_TIMEOUT = 10.0  # seconds a stop waits for the snapshots already being stored
ERASURES_KEPT = 1024  # erasure notices a camera remembers (the site's pseudonym: when forgotten)


class SnapshotError(RuntimeError):
    """A snapshot could not be taken (no recent frame); the message says why."""


class CameraDriver(BaseDriver, Snapshots):
    config_model = CameraDevice

    def __init__(self, device: CameraDevice, ctx: DriverContext) -> None:
        super().__init__(device, ctx)
        self.device: CameraDevice = device
        self.source = FrameSource(device)
        self.analyser = ZoneAnalyser(device)
        self.blobs = ctx.blob_store()
        self._task: asyncio.Task[None] | None = None
        self._snapshot_lock = asyncio.Lock()
        self._snapshot_tasks: set[asyncio.Task[Any]] = set()
        self.snapshots_taken = 0
        self.snapshots_deleted = 0
        self.snapshots_failed = 0  # periodic snapshots that could not be stored
        self._failure_reported = float("-inf")  # monotonic time of the last snapshot_failed event
        self.snapshot_ms: list[float] = []  # recent snapshot latencies (bench)
        self.analysis_ms: list[float] = []
        self.last_motion: float | None = None
        self._restate = False  # zone points were marked stale: report every zone state again
        #: (subject, ts) of the newest event of `subject_from.device` that names a subject
        self.recent_subject: tuple[str, float] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        #: the site's pseudonym of each subject a `subject_erased` notice named: when it was erased
        self._erased: dict[str, float] = {}
        #: (the measurement's ts, the data key's reference) an attributed snapshot of a subject was
        #: last sealed under: another key now (or none) for that measurement or an older one means
        #: the subject was forgotten since (worker threads only, one at a time: the snapshot lock)
        self._sealed_kid: dict[str, tuple[float, bytes | None]] = {}
        self._subject_source = device.subject_from.device if device.subject_from is not None else None
        #: its snapshots are sealed: decided at start (a sensitive camera, or a site with a master
        #: key), never again by a worker thread, which could see the key holder gone during a stop
        #: and would then write in clear
        self._seal = self.sensitive

    @property
    def sensitive(self) -> bool:
        """Its snapshots are sensitive data: sealed at rest, served to those allowed sensitive."""
        return self.device.privacy == Privacy.SENSITIVE

    def points(self) -> list[PointInfo]:
        return self.device.point_infos()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.sensitive and self.blobs.sealer() is None:
            # the site check stops such a site first; this holds where the store has no key anyway
            raise SnapshotError(
                f"camera {self.id}: privacy: sensitive needs privacy.master_key_file to seal its "
                "snapshots; none is in force"
            )
        self._seal = self.sensitive or self.blobs.sealer() is not None
        if self.sensitive and self.device.subject_from is not None and self.ctx.subscribe is not None:
            self._unsubscribe = self.ctx.subscribe(self._see_records)
            await self._recall_subject()
        self.source.start()
        self._task = asyncio.create_task(self._watch_loop(), name=f"camera:{self.id}")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:  # no new snapshot is started
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        # a snapshot being stored runs on in its worker thread whatever its task is told: it is
        # waited for (bounded), so it ends, stored or failed, while the site's key is still there
        running = set(self._snapshot_tasks)
        if running:
            _done, late = await asyncio.wait(running, timeout=STOP_SNAPSHOTS_TIMEOUT)
            if late:
                self.log.warning(
                    "camera %s: %d snapshots still being stored after %g s; stopping without them",
                    self.id,
                    len(late),
                    STOP_SNAPSHOTS_TIMEOUT,
                )
            for t in late:
                t.cancel()
            for t in running:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        await asyncio.to_thread(self.source.stop)
        self.end_stream()

    # ------------------------------------------------------------ the watch loop
    async def _watch_loop(self) -> None:
        try:
            await self._watch()
        except Exception as exc:  # an OpenCV error in analysis: the supervisor restarts the driver
            self.log.exception("camera %s watch loop failed", self.id)
            self.fail(exc)

    async def _watch(self) -> None:
        d = self.device
        loop = asyncio.get_running_loop()
        last_fps_at = loop.time()
        last_frames = 0
        next_analysis = loop.time()
        next_snapshot = loop.time() + d.snapshots.every if d.snapshots.every else None
        analysed_seq = 0
        while True:
            await asyncio.sleep(TICK)
            now = loop.time()
            frame = self.source.latest()
            self._judge_health(frame)
            if now - last_fps_at >= FPS_EVERY:
                frames = self.source.frames
                fps = (frames - last_frames) / (now - last_fps_at)
                last_fps_at, last_frames = now, frames
                ts = self.ctx.clock()
                self.emit(
                    [Reading(ts, f"{self.id}.fps", round(fps, 2)), Reading(ts, f"{self.id}.frames", frames)]
                )
            online = self.health.state == HealthState.ONLINE
            if online and frame is not None and now >= next_analysis and frame.seq != analysed_seq:
                next_analysis = now + d.analyse_every
                analysed_seq = frame.seq
                await self._analyse(frame)
            if next_snapshot is not None and now >= next_snapshot:
                next_snapshot = now + d.snapshots.every
                if online:
                    self._spawn_snapshot("periodic")

    def _judge_health(self, frame: Frame | None) -> None:
        d = self.device
        age = time.monotonic() - frame.at if frame is not None else None
        if frame is not None and age is not None and age <= d.stale_after:
            if self.health.state != HealthState.ONLINE:
                self.set_health(HealthState.ONLINE)
            self.health.last_ok = frame.ts
            return
        if frame is None and not self.source.error and self.health.state == HealthState.STARTING:
            return  # still opening: a first frame may take the open timeout
        if age is not None and age > d.stale_after:
            reason = f"no frame for {d.stale_after:g} s"
            if self.source.error:
                reason += f": {self.source.error}"
        else:
            reason = self.source.error or f"no frame for {d.stale_after:g} s"
        if self.health.state == HealthState.OFFLINE:
            self.set_health(HealthState.OFFLINE, reason)  # the latest reason, no new event
            return
        if self.source.connected:
            self.source.request_reopen()  # a frozen source: read() may block, the thread reopens after
        self.health.errors += 1
        self.set_health(HealthState.OFFLINE, reason)
        self._mark_stale()

    def _mark_stale(self) -> None:
        ts = self.ctx.clock()
        names = ["fps", "motion", *(zone_point(z.name) for z in self.device.zones)]
        self.emit([Reading(ts, point_id(self.id, n), None, Quality.STALE) for n in names])
        self._restate = True

    async def _analyse(self, frame: Frame) -> None:
        started = time.perf_counter()
        result = await asyncio.to_thread(self.analyser.analyse, frame.image, frame.at, frame.seq)
        self.analysis_ms.append((time.perf_counter() - started) * 1000)
        if len(self.analysis_ms) > 1000:
            del self.analysis_ms[:500]
        ts = frame.ts
        batch: list[Record] = [Reading(ts, f"{self.id}.motion", result.motion_pct)]
        self.last_motion = result.motion_pct
        changed = dict(result.changed)
        if self._restate and result.reference_ready:
            # back after an outage: a zone whose state did not change would otherwise stay stale
            for zone, state in self.analyser.zones.items():
                if state.reported is not None:
                    changed.setdefault(zone, state.reported)
            self._restate = False
        for zone, occupied in changed.items():
            batch.append(Reading(ts, point_id(self.id, zone_point(zone)), occupied))
        self.emit(batch)

    # ------------------------------------------------------------ whom a snapshot shows
    def _see_records(self, records: list[Record]) -> None:
        """Hub subscriber (every journaled batch, on the hot path): keep the newest event of the
        `subject_from` device that names a subject, and drop it when a `subject_erased` notice
        names that subject. A batch without an event (nearly all) costs one C-level scan of its
        types, not a Python loop over its readings."""
        if Event not in set(map(type, records)):
            return
        source = self._subject_source
        for r in records:
            if type(r) is not Event:
                continue
            if r.kind == ERASED_KIND:
                self._see_erasure(r)
            elif r.source == source:
                subject = subject_of(r.payload, self._private_points())
                if subject == SITE_SUBJECT or self._erased_since(subject, r.ts):
                    continue
                if self.recent_subject is None or r.ts >= self.recent_subject[1]:
                    self.recent_subject = (subject, r.ts)

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
        recent = self.recent_subject
        if recent is not None and self._pseudonym(recent[0]) == erased:
            self.log.info(
                "camera %s: the subject of its snapshots was forgotten; they name nobody now", self.id
            )
            self.recent_subject = None

    def _erased_since(self, subject: str, ts: float) -> bool:
        """An event of `subject` at `ts` was journaled before `subject` was forgotten."""
        if not self._erased:
            return False
        pseudonym = self._pseudonym(subject)
        at = self._erased.get(pseudonym) if pseudonym is not None else None
        return at is not None and ts <= at

    async def _recall_subject(self) -> None:
        """At start (after subscribing: nothing falls between the two), the subject of the
        `subject_from` device's newest journaled event within `within`: a restarted gateway or
        driver goes on naming the resident the kiosk measured before it. A failed read leaves
        the snapshots under the camera's key until the device's next event; the camera starts."""
        by = self.device.subject_from
        recent = self.ctx.recent_events
        if by is None or recent is None:
            return
        try:
            async with asyncio.timeout(RECALL_TIMEOUT):
                events: list[Record] = list(await recent(by.device, self.ctx.clock() - by.within))
        except Exception as exc:
            self.log.warning(
                "camera %s: the recent events of %s could not be read from the journal (%s: %s); "
                "snapshots name nobody until its next event",
                self.id,
                by.device,
                type(exc).__name__,
                exc,
            )
            return
        self._see_records(events)

    def current_subject(self) -> str | None:
        """The subject a periodic or command snapshot is about now: the one the newest event of the
        `subject_from` device named, if that event is no more than `within` from the clock."""
        by = self.device.subject_from
        recent = self.recent_subject
        if by is None or recent is None or not self.sensitive:
            return None
        subject, ts = recent
        return subject if abs(self.ctx.clock() - ts) <= by.within else None

    # ------------------------------------------------------------ snapshots
    def _spawn_snapshot(self, reason: str) -> None:
        task = asyncio.create_task(self._snapshot_logged(reason), name=f"camera:{self.id}:snapshot")
        self._snapshot_tasks.add(task)
        task.add_done_callback(self._snapshot_tasks.discard)

    async def _snapshot_logged(self, reason: str) -> None:
        """A snapshot nobody waits for (the periodic ones): a failure is logged, counted and
        journaled as `snapshot_failed`, at most one event a minute (`failed` says how many)."""
        try:
            await self.snapshot(reason)
        except SnapshotError as exc:
            self.snapshots_failed += 1
            self.log.warning("snapshot (%s) not taken: %s", reason, exc)
            now = time.monotonic()
            if now - self._failure_reported >= FAILURE_EVENT_EVERY_S:
                self._failure_reported = now
                payload = {"reason": reason, "error": str(exc), "failed": self.snapshots_failed}
                self.emit([Event("snapshot_failed", self.id, Severity.WARNING, payload, self.ctx.clock())])

    async def snapshot(
        self, reason: str, rule: str | None = None, subject: str | None = None
    ) -> dict[str, Any]:
        """Take a snapshot of the latest frame: redact, store as a blob, emit a `snapshot` event.
        `subject`: the resident or plate the picture is about (the record that fired the rule): a
        sensitive camera, and a personal one on a site with a master key, seals it under that
        subject's key, so forgetting the subject erases it, and the event names it (`subject`).
        Without one, a sensitive camera with `subject_from` takes the subject of that device's
        recent event (`current_subject`); the event then also says which device it was
        attributed by (`subject_from`).

        Returns the event's payload; raises SnapshotError when there is no recent frame or a
        sensitive snapshot cannot be sealed."""
        frame = self.source.latest()
        if frame is None or time.monotonic() - frame.at > self.device.stale_after:
            state = f"{self.health.state}" + (f": {self.health.reason}" if self.health.reason else "")
            raise SnapshotError(f"camera {self.id} has no recent frame ({state})")
        attributed: float | None = None  # the ts of the measurement the subject is taken from
        recent = self.recent_subject
        if subject is None:
            subject = self.current_subject()
            attributed = recent[1] if subject is not None and recent is not None else None
        async with self._snapshot_lock:
            started = time.perf_counter()
            try:
                payload, pruned = await asyncio.to_thread(
                    self._store_snapshot, frame, reason, rule, subject, attributed
                )
            except BlobSealError as exc:
                raise SnapshotError(str(exc)) from None
            except OSError as exc:  # a full disk, a read-only blob dir: said, not a stray traceback
                raise SnapshotError(f"camera {self.id}: the snapshot could not be stored: {exc}") from None
            if attributed is not None and "subject" in payload:
                payload["subject_from"] = self._subject_source
            elif attributed is not None and self.recent_subject == recent:
                self.recent_subject = None  # forgotten since its last snapshot: it names nobody now
            self.snapshot_ms.append((time.perf_counter() - started) * 1000)
            if len(self.snapshot_ms) > 1000:
                del self.snapshot_ms[:500]
        self.snapshots_taken += 1
        ts = self.ctx.clock()
        records: list[Record] = [Event("snapshot", self.id, Severity.INFO, payload, frame.ts)]
        if pruned:
            self.snapshots_deleted += len(pruned)
            records.append(
                Event(
                    "blobs_pruned",
                    self.id,
                    Severity.INFO,
                    {
                        "blobs": [b.id for b in pruned],
                        "count": len(pruned),
                        "bytes": sum(b.bytes for b in pruned),
                        "deleted_total": self.snapshots_deleted,
                        "keep": self.device.snapshots.keep,
                        "max_bytes": self.device.snapshots.max_bytes,
                    },
                    ts,
                )
            )
            records.append(Reading(ts, f"{self.id}.snapshots_deleted", self.snapshots_deleted))
        self.emit(records)
        return payload

    def _store_snapshot(
        self,
        frame: Frame,
        reason: str,
        rule: str | None,
        subject: str | None = None,
        attributed: float | None = None,
    ) -> tuple[dict[str, Any], list[Any]]:
        """In a worker thread: redact, encode, write the blob, apply the retention cap. `attributed`:
        `subject` came from the `subject_from` device's event of that ts, and is dropped (the
        picture goes under the camera's key) when the data key a snapshot was sealed under for that
        event, or an older one, is gone since: the subject was forgotten."""
        image = frame.image
        redaction = None
        if self.device.redact:
            image, redaction = redact(image, self.analyser.moving_boxes(image, frame.seq))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.device.snapshots.quality])
        if not ok:
            raise SnapshotError(f"camera {self.id}: the frame could not be encoded as JPEG")
        # a sensitive camera's pictures are always sealed; a personal camera's where the site
        # has a master key (stored as personal data: `.psealed`), else plain. Decided at start:
        # a put that must seal and finds no key fails (BlobSealError), never writes in clear
        keys = getattr(self.blobs.sealer(), "keys", None) if attributed is not None else None
        kid_of = getattr(keys, "kid_of", None)
        if callable(kid_of) and subject is not None and attributed is not None:
            known = self._sealed_kid.get(subject)
            if known is not None and attributed <= known[0] and kid_of(subject) != known[1]:
                subject = None  # forgotten since that measurement: never a fresh key for it
        seal = (subject or CAMERA_KEY + self.id) if self._seal else None
        blob = self.blobs.put(self.id, encoded.tobytes(), seal=seal, sensitive=self.sensitive)
        if callable(kid_of) and subject is not None and attributed is not None and blob.sealed:
            if len(self._sealed_kid) >= ERASURES_KEPT:
                self._sealed_kid.clear()
            self._sealed_kid[subject] = (attributed, kid_of(subject))
        payload: dict[str, Any] = {
            "blob": blob.id,
            "bytes": blob.bytes,
            "sha256": blob.sha256,
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "reason": reason,
            "redacted": redaction is not None,
            "privacy": str(self.device.privacy),
        }
        if blob.sealed:
            payload["sealed"] = True
        if subject is not None:
            payload["subject"] = subject
        if redaction is not None:
            payload["redaction"] = redaction.mode
            payload["faces"] = redaction.faces
            payload["plates"] = redaction.plates
            payload["moving_regions"] = redaction.moving
            if redaction.reason:
                payload["redaction_reason"] = redaction.reason
        if rule is not None:
            payload["rule"] = rule
        snaps = self.device.snapshots
        pruned = self.blobs.prune(self.id, snaps.keep, snaps.max_bytes, spare=blob.path)
        return payload, pruned

    # ------------------------------------------------------------ commands
    async def write(self, point: str, value: Value) -> CommandResult:
        pid = point_id(self.id, point)
        if point not in COMMANDS:
            return CommandResult(pid, value, CommandStatus.REJECTED, "not a writable point of this camera")
        if value not in (True, 1, "true", "1"):
            return CommandResult(pid, value, CommandStatus.REJECTED, "write true to do it")
        if point == "capture_reference":
            self.analyser.recapture_reference()
            return CommandResult(pid, value, CommandStatus.OK)
        try:
            payload = await self.snapshot("command")
        except SnapshotError as exc:
            return CommandResult(pid, value, CommandStatus.FAILED, str(exc))
        return CommandResult(pid, value, CommandStatus.OK, f"blob {payload['blob']}")


DRIVER = CameraDriver
