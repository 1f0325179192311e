"""Capture from a real RTSP server (GStreamer's, run by the system python): frames flow; a frozen
source (the session stays connected, no frames come) takes the camera offline with a reason while
the rest of the site keeps running, and it recovers without a runtime restart; a killed server
likewise. Repeated freeze/reopen cycles leave no thread behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from drivers.camera.capture import FrameSource
from drivers.camera.config import CameraDevice
from tests.camera.helpers import Collector, frames_flow, value
from tests.support.ports import free_port
from tests.support.procs import stop_process
from tests.support.site import running_site
from tests.support.tools import require_gi_typelib
from tests.support.waiting import until, until_sync

SCRIPT = Path(__file__).with_name("rtsp_server.py")
FREEZES = 2  # a thread a reopen left behind shows after the first; the second is a reopen of a reopen
PACKAGES = (
    "Debian packages gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
)


class RtspServer:
    """tests/camera/rtsp_server.py on 127.0.0.1:PORT/cam: started, frozen, thawed and killed by
    PID (so a test can bring it back on the same port)."""

    def __init__(self, port: int) -> None:
        self.python = require_gi_typelib("/usr/bin/python3", "GstRtspServer", "1.0", PACKAGES)
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        self.lines = lines = []
        proc = subprocess.Popen(
            [self.python, str(SCRIPT), str(self.port), "cam"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.proc = proc

        def read() -> None:  # ends at EOF, when the server exits
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.strip())

        threading.Thread(target=read, name="rtsp-server-stdout", daemon=True).start()
        until_sync(lambda: self._said("READY"), timeout=60, what="the RTSP server's READY line")

    def _said(self, word: str) -> bool:
        if (
            self.proc is not None
            and self.proc.poll() is not None
            and not any(line.startswith(word) for line in self.lines)
        ):
            raise AssertionError(f"the RTSP server exited ({self.proc.returncode}): {self.lines}")
        return any(line.startswith(word) for line in self.lines)

    async def _signal(self, sig: int, word: str) -> None:
        assert self.proc is not None
        self.lines.clear()
        os.kill(self.proc.pid, sig)
        await until(lambda: self._said(word), timeout=30, what=f"the RTSP server's {word} line")

    async def freeze(self) -> None:
        """No more frames; the session stays connected."""
        await self._signal(signal.SIGUSR1, "FROZEN")

    async def thaw(self) -> None:
        await self._signal(signal.SIGUSR2, "THAWED")

    def kill(self) -> None:
        stop_process(self.proc)
        self.proc = None


@contextlib.contextmanager
def rtsp_server(port: int) -> Iterator[RtspServer]:
    server = RtspServer(port)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def site(url: str) -> dict[str, Any]:
    """A camera with short timeouts beside a simulated meter sampled 10 times a second."""
    cam = {
        "id": "cam",
        "driver": "camera",
        "url": url,
        "open_timeout": "10s",  # RTSP opens in ~2 s; a loaded CI box may take longer
        "read_timeout": "1s",
        "stale_after": "2s",
        "reconnect_max": "1s",
    }
    meter = {
        "id": "meter",
        "driver": "sim",
        "points": [{"name": "n", "signal": "counter", "interval": "100ms"}],
    }
    return {"devices": [cam, meter]}


def runtime_threads() -> list[str]:
    """Threads that belong to the runtime (not the test's stdout readers, not executor workers,
    which the event loop's default executor keeps for reuse)."""
    return sorted(
        t.name
        for t in threading.enumerate()
        if t.is_alive() and not t.name.startswith(("rtsp-server-stdout", "asyncio_", "ThreadPoolExecutor"))
    )


def native_threads() -> int:
    """Threads of this process that Python did not start (FFmpeg's decoder threads, OpenCV's pool)."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


async def test_rtsp_frames_flow_and_the_camera_is_online(tmp_path: Path) -> None:
    with rtsp_server(free_port()) as source:
        async with running_site(tmp_path, site(source.url), web=False) as rt:
            await frames_flow(rt, (240, 320, 3), min_fps=0, timeout=60)


async def test_a_frozen_rtsp_source_goes_offline_the_site_keeps_running_and_it_recovers(
    tmp_path: Path,
) -> None:
    with rtsp_server(free_port()) as source:
        async with running_site(tmp_path, site(source.url), web=False) as rt:
            seen = Collector(rt)
            slot = rt.slots["cam"]
            driver = await until(lambda: slot.driver, what="driver")
            await until(lambda: slot.health.state == "online", timeout=60, what="camera online")
            # analysed once (OpenCV's thread pool exists), so later thread counts compare like with like
            await until(lambda: value(rt, "cam.motion") is not None, timeout=30, what="a motion reading")
            before = runtime_threads()
            assert before.count("camera:cam") == 1
            native_before = native_threads()

            for cycle in range(FREEZES):
                await source.freeze()
                # noticed after stale_after (2 s) plus a watchdog tick; generous for a loaded box
                await until(lambda: slot.health.state == "offline", timeout=30, what=f"offline ({cycle})")
                assert "no frame for 2 s" in slot.health.reason
                # the event loop is not blocked by the frozen read: the meter keeps counting
                counted = len(seen.of("meter.n"))
                await until(
                    lambda n=counted: len(seen.of("meter.n")) >= n + 5, timeout=30, what="meter readings"
                )
                # the capture thread saw the blocked read, released the session and is reopening
                await until(lambda: "a read blocked" in slot.health.reason, timeout=30, what="blocked read")
                opens = driver.source.opens
                frames = driver.source.frames

                await source.thaw()
                await until(lambda: slot.health.state == "online", timeout=60, what=f"online again ({cycle})")
                await until(lambda n=frames: driver.source.frames > n + 5, timeout=30, what="new frames")
                assert driver.source.opens > opens, "recovered by reopening the session"
                assert slot.driver is driver and slot.restarts == 0, "recovered inside the driver"

            assert runtime_threads() == before, "a freeze/reopen cycle left a thread behind"
            assert native_threads() <= native_before, "a reopen left FFmpeg's threads behind"
            states = [e.payload["state"] for e in seen.kind("device_state") if e.source == "cam"]
            assert states.count("offline") == FREEZES


async def test_a_killed_rtsp_server_goes_offline_and_recovers_when_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    with rtsp_server(port) as source:
        async with running_site(tmp_path, site(source.url), web=False) as rt:
            slot = rt.slots["cam"]
            driver = await until(lambda: slot.driver, what="driver")
            await until(lambda: slot.health.state == "online", timeout=60, what="camera online")
            frames = driver.source.frames

            source.kill()
            await until(lambda: slot.health.state == "offline", timeout=30, what="camera offline")
            assert "no frame for 2 s" in slot.health.reason
            await until(lambda: "cannot open" in slot.health.reason, timeout=30, what="reopen refused")
            assert source.url in slot.health.reason

            source.start()  # the same port again
            await until(lambda: slot.health.state == "online", timeout=60, what="camera back online")
            await until(lambda: driver.source.frames > frames + 5, timeout=30, what="new frames")
            assert slot.driver is driver and slot.restarts == 0


class _FrozenAfter:
    """A capture that delivers `good` frames, then behaves like OpenCV on a frozen stream: each
    read blocks for the read timeout and still returns a (leftover) frame."""

    def __init__(self, good: int, block: float) -> None:
        self.good = good
        self.block = block

    def read(self) -> tuple[bool, Any]:
        if self.good > 0:
            self.good -= 1
        else:
            time.sleep(self.block)
        return True, np.zeros((24, 32, 3), np.uint8)

    def release(self) -> None:
        pass

    def get(self, _prop: int) -> float:
        return 0.0


def test_a_read_that_blocks_for_the_read_timeout_is_a_frozen_source_not_a_frame() -> None:
    """OpenCV returns the decoder's leftover frames from reads its timeout interrupted; they must
    not count as new frames (which kept a frozen camera online), and the source is reopened."""
    device = CameraDevice.model_validate(
        {"id": "cam", "driver": "camera", "url": "rtsp://127.0.0.1:9/cam", "read_timeout": "200ms"}
    )
    source = FrameSource(device)
    caps: list[_FrozenAfter] = []

    def open_fake() -> _FrozenAfter:
        caps.append(_FrozenAfter(good=3, block=0.25))
        return caps[-1]

    source._open = open_fake  # type: ignore[method-assign]
    source.start()
    try:
        until_sync(lambda: source.opens >= 2, timeout=30, what="a reopen")
    finally:
        source.stop(timeout=10)
    # every session gave (at most) 3 good frames; the blocked reads added none
    assert source.frames <= 3 * len(caps)
    assert source.error.startswith("the source rtsp://127.0.0.1:9/cam stopped sending (a read blocked for")
