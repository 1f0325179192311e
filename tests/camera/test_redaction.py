"""Redaction before storage: a moving high-contrast pattern is blurred in the stored snapshot while
the static scene stays sharp; with `redact: false` the same pattern is stored sharp."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.camera.helpers import sharpness, write_video
from tests.support.site import running_site
from tests.support.waiting import until

W, H = 320, 240
STATIC = (slice(20, 220), slice(10, 150))  # left: fine static stripes (rows, cols)
TRACK = (slice(90, 150), slice(170, 320))  # right: flat grey but for the moving checker


def scene(i: int) -> np.ndarray[Any, Any]:
    img = np.full((H, W, 3), 128, np.uint8)
    img[STATIC[0], STATIC[1]][:, ::4] = 20  # vertical lines every 4 px: sharp, and no face to a cascade
    x = 175 + (i * 6) % 100
    board = ((np.indices((40, 40)).sum(axis=0) // 5) % 2 * 255).astype(np.uint8)
    img[100:140, x : x + 40] = board[:, :, None]
    return img


def stored(rt: Any, payload: dict[str, Any]) -> np.ndarray[Any, Any]:
    path = Path(rt.site.storage.resolved_blob_dir()) / "cam" / f"{payload['blob']}.jpg"
    image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.mark.parametrize("redact", [True, False])
async def test_moving_pattern_is_blurred_before_storage_unless_redaction_is_off(
    tmp_path: Path, redact: bool
) -> None:
    video = write_video(tmp_path / "cam.avi", scene, 150, fps=15)
    cam = {"id": "cam", "driver": "camera", "url": str(video), "loop": True, "analyse_every": "200ms"}
    cam["redact"] = redact
    async with running_site(tmp_path, {"devices": [cam]}, web=False) as rt:
        driver: Any = await until(lambda: rt.slots["cam"].driver, what="driver")
        await until(lambda: driver.analyser.analysed >= 2, timeout=10, what="two analyses (motion known)")
        payload = await driver.snapshot("test")
        image = stored(rt, payload)
        static, track = sharpness(image[STATIC]), sharpness(image[TRACK])
        original = sharpness(scene(0)[TRACK])
        assert static > 1000, "the static scene is stored sharp (no whole-frame blur)"
        assert payload["redacted"] is redact
        if redact:
            assert payload["redaction"] == "regions" and payload["moving_regions"] >= 1
            assert track < original / 20, (track, original)
        else:
            assert "redaction" not in payload
            assert track > original / 3, (track, original)


async def test_without_detectors_the_whole_frame_is_blurred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drivers.camera import redact as redaction

    monkeypatch.setattr(redaction, "cascades", lambda: (None, "no cascades in this OpenCV"))
    video = write_video(tmp_path / "cam.avi", scene, 150, fps=15)
    cam = {"id": "cam", "driver": "camera", "url": str(video), "loop": True, "analyse_every": "200ms"}
    async with running_site(tmp_path, {"devices": [cam]}, web=False) as rt:
        driver: Any = await until(lambda: rt.slots["cam"].driver, what="driver")
        await until(lambda: driver.analyser.analysed >= 2, timeout=10, what="two analyses")
        payload = await driver.snapshot("test")
        assert payload["redaction"] == "full" and "no cascades" in payload["redaction_reason"]
        image = stored(rt, payload)
        assert sharpness(image[STATIC]) < sharpness(scene(0)[STATIC]) / 20, "fail closed: everything blurred"
