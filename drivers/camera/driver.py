"""The camera driver: one capture thread, a watchdog, analysis at a low rate, snapshots as blobs.

The event loop never touches OpenCV: the capture thread keeps the latest frame; analysis,
redaction and JPEG encoding run in worker threads (OpenCV releases the GIL). The watch loop
ticks a few times a second: it reports `fps` and `frames`, judges health from the age of the
latest frame, runs an analysis when one is due and takes periodic snapshots.

A sensitive camera with `subject_from` files its periodic and command snapshots under the subject
of that device's newest event (`drivers.camera.subject`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import cv2

from drivers.camera.analysis import ZoneAnalyser
from drivers.camera.capture import Frame, FrameSource
from drivers.camera.config import CameraDevice
from drivers.camera.points import COMMANDS, zone_point
from drivers.camera.redact import redact
from drivers.camera.subject import SubjectWatch
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
from edge.store.blobs import CAMERA_KEY, BlobSealError

TICK = 0.2  # seconds between watchdog/analysis checks
FPS_EVERY = 1.0  # seconds between fps/frames readings
FAILURE_EVENT_EVERY_S = 60.0  # at most one snapshot_failed event a minute per camera
STOP_SNAPSHOTS_TIMEOUT = 10.0  # seconds a stop waits for the snapshots already being stored


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
        self._unsubscribe: Callable[[], None] | None = None
        #: whom its snapshots show: a sensitive camera with `subject_from` only
        self.subjects = (
            SubjectWatch(self.id, device.subject_from, self.blobs, ctx.clock, self.log)
            if device.subject_from is not None and self.sensitive
            else None
        )
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
        if self.subjects is not None and self.ctx.subscribe is not None:
            self._unsubscribe = self.ctx.subscribe(self.subjects.see)
            await self.subjects.recall(self.ctx.recent_events)
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
    def current_subject(self) -> str | None:
        """The subject a periodic or command snapshot is about now: the one the newest event of the
        `subject_from` device named, if that event is no more than `within` from the clock."""
        attributed = self.subjects.current() if self.subjects is not None else None
        return attributed[0] if attributed is not None else None

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
        attributed = None  # (subject, ts) of the `subject_from` device's event it is taken from
        if subject is None and self.subjects is not None:
            attributed = self.subjects.current()
            subject = attributed[0] if attributed is not None else None
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
            if attributed is not None and self.subjects is not None:
                if "subject" in payload:
                    payload["subject_from"] = self.subjects.by.device
                else:  # forgotten since its last snapshot: it names nobody now
                    self.subjects.forgotten(attributed)
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
        attributed: tuple[str, float] | None = None,
    ) -> tuple[dict[str, Any], list[Any]]:
        """In a worker thread: redact, encode, write the blob, apply the retention cap. `attributed`:
        (`subject`, ts) of the `subject_from` device's event it came from; dropped (the picture
        goes under the camera's key) when the subject was forgotten since (`SubjectWatch`)."""
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
        watch = self.subjects if attributed is not None else None
        if watch is not None and attributed is not None and not watch.still_keyed(attributed):
            subject = None  # forgotten since that event: never a fresh key for it
        seal = (subject or CAMERA_KEY + self.id) if self._seal else None
        blob = self.blobs.put(self.id, encoded.tobytes(), seal=seal, sensitive=self.sensitive)
        if watch is not None and attributed is not None and subject is not None and blob.sealed:
            watch.sealed(attributed)
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
