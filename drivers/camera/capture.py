"""The capture thread: opens the source with OpenCV, keeps only the latest frame, reopens on failure.

OpenCV's `read()` blocks (up to 3 x the read timeout on a frozen RTSP source) and releases the
GIL while it decodes, so it runs in a dedicated thread and the event loop only ever looks at the
newest frame. Older frames are dropped on purpose: analysis and snapshots want "now", and a
queue would only add latency. The driver's watchdog asks for a reopen when no good frame came
for `stale_after`; the thread also reopens by itself when a read fails, with capped, jittered
backoff, and when a read took the whole read timeout: the source froze, and what such a read
returns is the decoder's leftover frame, not a new one.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from drivers.camera.config import CameraDevice

BACKOFF_INITIAL = 0.25


def shown_url(url: str) -> str:
    """The url without its password, for health reasons and logs (they end up in the journal)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{parts.username}:***@{host}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray[Any, Any]
    seq: int  # frames read since the source was created
    at: float  # monotonic time it was read
    ts: float  # UTC epoch seconds it was read


class FrameSource:
    """One video source read by one thread; `latest()` is safe to call from any thread."""

    def __init__(self, device: CameraDevice) -> None:
        self.device = device
        self.url = device.source_path()
        self.shown = shown_url(device.url)
        self._latest: Frame | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reopen = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames = 0
        self.opens = 0
        self.failures = 0
        self.connected = False
        self.error = ""  # why the source is not delivering, for the health reason
        self.size: tuple[int, int] | None = None  # (width, height) of the last frame

    # ------------------------------------------------------------ control (any thread)
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"camera:{self.device.id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end and wait for it (blocking: call it through asyncio.to_thread)."""
        self._stop.set()
        if self._thread is not None:
            limit = (
                timeout
                if timeout is not None
                else self.device.open_timeout + 3 * self.device.read_timeout + 1
            )
            self._thread.join(limit)

    def request_reopen(self) -> None:
        self._reopen.set()

    def latest(self) -> Frame | None:
        with self._lock:
            return self._latest

    # ------------------------------------------------------------ the thread
    def _open(self) -> Any:
        d = self.device
        kind = d.source_kind()
        if kind == "device":
            cap = cv2.VideoCapture(self.url, cv2.CAP_V4L2)
        else:
            if self.url.lower().startswith(("rtsp://", "rtsps://")):
                # read by FFmpeg when it opens the stream; TCP survives lossy links and NAT
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{d.rtsp_transport}"
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(d.open_timeout * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(d.read_timeout * 1000),
            ]
            cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            self._reopen.clear()
            cap = self._open()
            self.opens += 1
            if cap is None:
                self.error = f"cannot open {self.shown} (no answer within {self.device.open_timeout:g} s, or not a video)"
            else:
                if self._read_until_failure(cap):
                    backoff = 0.0  # it delivered: a later failure starts the backoff over
                cap.release()
                self.connected = False
            if self._stop.is_set():
                return
            self.failures += 1
            backoff = min(self.device.reconnect_max, max(BACKOFF_INITIAL, backoff * 2))
            self._stop.wait(backoff * random.uniform(0.8, 1.2))

    def _read_until_failure(self, cap: Any) -> bool:
        """Read frames until the source fails, a reopen is asked for, or stop; True if any frame came."""
        d = self.device
        is_file = d.source_kind() == "file"
        period = 0.0
        if is_file and d.realtime:
            fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            period = 1.0 / fps if 1.0 <= fps <= 240.0 else 1.0 / 25
        got_any = False
        since_rewind = 0
        next_at = time.monotonic()
        while not self._stop.is_set() and not self._reopen.is_set():
            started = time.monotonic()
            ok, image = cap.read()
            blocked = time.monotonic() - started
            if not is_file and blocked >= d.read_timeout:
                # FFmpeg's read timeout fired: the source froze. The frames a timed-out read still
                # returns are the decoder's leftovers (two of them, each after another full
                # timeout); counting them as new would keep a frozen camera online. Reopen now.
                self.error = (
                    f"the source {self.shown} stopped sending (a read blocked for {round(blocked, 1):g} s)"
                )
                return got_any
            if not ok or image is None:
                if is_file and d.loop and since_rewind > 0:
                    since_rewind = 0
                    if cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                        continue
                self.error = f"{self.shown} ended" if is_file else f"the source {self.shown} stopped sending"
                return got_any
            since_rewind += 1
            got_any = True
            self.connected = True
            self.error = ""
            now = time.monotonic()
            with self._lock:
                self.frames += 1
                self._latest = Frame(image, self.frames, now, time.time())
            self.size = (int(image.shape[1]), int(image.shape[0]))
            if period:
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:  # decoding fell behind the file's rate: go on, never burst to catch up
                    next_at = time.monotonic()
        return got_any
