"""Camera benchmark: frames/s through the camera driver (capture thread + watchdog + zone analysis)
reading a 720p H.264 file as fast as it decodes, beside the decode-only floor (cv2 reading the same
file in a loop) measured in the same run; plus analysis cost per frame and snapshot latency
(redaction with the Haar cascades + JPEG + blob write) at 720p.

    python -m bench.camera [--quick]

The last line is one JSON object with the figures and "ratio" (driver frames/s / floor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from drivers.camera.analysis import ZoneAnalyser
from drivers.camera.config import CameraDevice
from drivers.camera.driver import CameraDriver
from edge.driver import DriverContext
from edge.store.blobs import BlobStore

ZONES = [
    {
        "name": f"space_{i}",
        "polygon": [
            [0.05 + i * 0.24, 0.5],
            [0.25 + i * 0.24, 0.5],
            [0.25 + i * 0.24, 0.95],
            [0.05 + i * 0.24, 0.95],
        ],
    }
    for i in range(4)
]


def make_video(folder: Path, seconds: int) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("bench.camera needs ffmpeg (Debian package ffmpeg)")
    path = folder / "cam.mp4"
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=15", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-b:v", "2M", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def floor(path: Path) -> tuple[float, int]:
    """Decode only: cv2 reads every frame of the file, nothing else."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = 0
    start = time.perf_counter()
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        frames += 1
    elapsed = time.perf_counter() - start
    cap.release()
    return frames / elapsed, frames


def device(path: Path, **extra: Any) -> CameraDevice:
    doc: dict[str, Any] = {
        "id": "cam",
        "driver": "camera",
        "url": str(path),
        "realtime": False,
        "zones": ZONES,
    }
    doc.update(extra)
    return CameraDevice.model_validate(doc)


async def through_driver(path: Path, blob_dir: Path, snapshots: int) -> dict[str, Any]:
    """The driver as the runtime runs it: frames/s of the capture thread while the watch loop
    analyses, and snapshot latency while frames keep coming."""
    ctx = DriverContext(
        "bench", str(blob_dir), logging.getLogger("bench.camera"), time.time, blobs=BlobStore(blob_dir)
    )
    driver = CameraDriver(device(path, analyse_every="200ms", loop=True), ctx)
    records = 0

    async def drain() -> None:
        nonlocal records
        async for batch in driver.stream():
            records += len(batch)

    consumer = asyncio.create_task(drain())
    await driver.start()
    while driver.source.frames == 0:  # noqa: ASYNC110 - a counter of the capture thread, no event to await
        await asyncio.sleep(0.01)
    lags: list[float] = []
    start_frames, start = driver.source.frames, time.perf_counter()
    loop = asyncio.get_running_loop()
    taken = 0
    deadline = start + max(3.0, snapshots * 0.3)
    while time.perf_counter() < deadline:  # the event loop stays responsive meanwhile
        t = loop.time()
        await asyncio.sleep(0.01)
        lags.append((loop.time() - t - 0.01) * 1000)
        if (
            taken < snapshots
            and driver.analyser.analysed >= 2
            and time.perf_counter() - start > 0.3 * (taken + 1)
        ):
            await driver.snapshot("bench")
            taken += 1
    fps = (driver.source.frames - start_frames) / (time.perf_counter() - start)
    await driver.stop()
    await consumer
    lags.sort()
    snap = sorted(driver.snapshot_ms)
    return {
        "driver_fps": round(fps, 1),
        "analyses": driver.analyser.analysed,
        "records": records,
        "loop_lag_p99_ms": round(lags[int(len(lags) * 0.99) - 1], 2) if lags else None,
        "snapshots": len(snap),
        "snapshot_p50_ms": round(statistics.median(snap), 1) if snap else None,
        "snapshot_max_ms": round(snap[-1], 1) if snap else None,
    }


def analysis_cost(path: Path, frames: int) -> float:
    """ms per analysis (downscale + reference difference + 4 zones + motion) of a 720p frame."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    images = []
    for _ in range(min(frames, 60)):
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    cap.release()
    analyser = ZoneAnalyser(device(path))
    start = time.perf_counter()
    for i, image in enumerate(images * 3):
        analyser.analyse(image, float(i), i)
    return (time.perf_counter() - start) * 1000 / (len(images) * 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (well under a minute)")
    args = ap.parse_args()
    seconds, snapshots = (40, 5) if args.quick else (120, 20)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video = make_video(folder, seconds)
        floor_fps, frames = floor(video)
        result = asyncio.run(through_driver(video, folder / "blobs", snapshots))
        per_analysis = analysis_cost(video, frames)
    ratio = result["driver_fps"] / floor_fps
    print(f"720p H.264, {frames} frames: decode-only floor {floor_fps:.0f} fps")
    print(
        f"camera driver (capture thread + watch loop + analysis every 200 ms): {result['driver_fps']:.0f} fps"
    )
    print(
        f"analysis {per_analysis:.2f} ms/frame (4 zones, {320} px wide); event loop lag p99 {result['loop_lag_p99_ms']} ms"
    )
    print(
        f"snapshot (redaction + JPEG + blob) p50 {result['snapshot_p50_ms']} ms, max {result['snapshot_max_ms']} ms"
    )
    print(f"ratio {ratio:.2f} (driver frames/s over the decode-only floor; snapshots share the 2 cores)")
    print(
        json.dumps(
            {
                "bench": "camera",
                "quick": args.quick,
                "frames": frames,
                "floor_decode_fps": round(floor_fps, 1),
                **result,
                "analysis_ms": round(per_analysis, 2),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
