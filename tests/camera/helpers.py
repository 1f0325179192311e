"""Video sources for the camera tests: ffmpeg serving MJPEG over HTTP, and drawn video files."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.model import Event, Reading
from tests.support.procs import stop_process
from tests.support.tools import require_tool
from tests.support.waiting import until

Image = np.ndarray[Any, Any]


class MjpegServer:
    """`ffmpeg ... -f mpjpeg -listen 1 http://127.0.0.1:PORT/cam.mjpg`: one client, started and
    stopped by PID (so a test can kill the source and bring it back on the same port)."""

    def __init__(self, port: int, size: str = "640x360", rate: int = 15) -> None:
        self.ffmpeg = require_tool("ffmpeg", "Debian package ffmpeg")
        self.port = port
        self.size = size
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cam.mjpg"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.ffmpeg,
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                f"testsrc=size={self.size}:rate={self.rate}",
                "-c:v",
                "mjpeg",
                "-q:v",
                "5",
                "-f",
                "mpjpeg",
                "-listen",
                "1",
                self.url,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        stop_process(self.proc)
        self.proc = None


@contextlib.contextmanager
def mjpeg_server(port: int, **kw: Any) -> Iterator[MjpegServer]:
    server = MjpegServer(port, **kw)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def write_video(path: Path, draw: Callable[[int], Image], frames: int, fps: float = 10.0) -> Path:
    """A Motion-JPEG AVI with `draw(i)` as frame i (BGR, uint8)."""
    first = draw(0)
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write an MJPG AVI"
    try:
        for i in range(frames):
            writer.write(first if i == 0 else draw(i))
    finally:
        writer.release()
    return path


def sharpness(image: Image) -> float:
    """Variance of the Laplacian: high for sharp detail, near 0 for a blurred or flat region."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


class Collector:
    """Everything the hub publishes, kept for the test to look at."""

    def __init__(self, rt: Any) -> None:
        self.events: list[Event] = []
        self.readings: list[Reading] = []
        rt.hub.subscribe(self._take)

    def _take(self, records: list[Any]) -> None:
        for r in records:
            (self.events if isinstance(r, Event) else self.readings).append(r)

    def kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def of(self, point: str) -> list[Reading]:
        return [r for r in self.readings if r.point == point]


def value(rt: Any, point: str) -> Any:
    """The latest value of `point` in the hub, None before its first reading."""
    r = rt.hub.latest.get(point)
    return None if r is None else r.value


async def frames_flow(rt: Any, shape: tuple[int, int, int], min_fps: float, timeout: float) -> None:
    """Camera `cam` of runtime `rt` comes online, counts 15 frames and reports an fps above
    `min_fps` (each within `timeout` seconds), and its latest frame is an image of `shape`."""
    slot = rt.slots["cam"]
    await until(lambda: slot.health.state == "online", timeout=timeout, what="camera online")
    await until(lambda: (value(rt, "cam.frames") or 0) >= 15, timeout=timeout, what="15 frames")
    await until(lambda: (value(rt, "cam.fps") or 0) > min_fps, timeout=timeout, what="fps reported")
    frame = slot.driver.source.latest()
    assert frame is not None and frame.image.shape == shape
