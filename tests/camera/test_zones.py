"""Parking-space occupancy: a car-sized block appears inside one zone of a drawn video; that zone's
point turns true only after `hold`, the other zone's point stays false."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.camera.helpers import Collector, write_video
from tests.support.site import running_site
from tests.support.waiting import until

FPS = 10
APPEARS = 30  # frame index where the block appears (3 s into the video)
HOLD = 1.0


def parking_lot(i: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(i)  # a little sensor noise, different every frame
    img = np.clip(rng.normal(110, 3, (240, 320, 3)), 0, 255).astype(np.uint8)
    cv2.line(img, (160, 0), (160, 239), (200, 200, 200), 2)  # the painted line between the spaces
    if i >= APPEARS:
        cv2.rectangle(img, (30, 50), (130, 200), (40, 40, 60), -1)  # a dark car in space_1
    return img


async def test_a_block_in_one_zone_turns_its_point_true_after_the_hold_and_not_the_other(
    tmp_path: Path,
) -> None:
    video = write_video(tmp_path / "lot.avi", parking_lot, 300, fps=FPS)
    cam = {
        "id": "cam",
        "driver": "camera",
        "url": str(video),
        "loop": True,
        "analyse_every": "100ms",
        "reference_frames": 3,
        "hold": f"{HOLD}s",
        "zones": [
            {"name": "space_1", "polygon": [[0.05, 0.1], [0.45, 0.1], [0.45, 0.9], [0.05, 0.9]]},
            {"name": "space_2", "polygon": [[0.55, 0.1], [0.95, 0.1], [0.95, 0.9], [0.55, 0.9]]},
        ],
    }
    async with running_site(tmp_path, {"devices": [cam]}, web=False) as rt:
        seen = Collector(rt)
        occupied = await until(
            lambda: [r for r in seen.of("cam.space_1_occupied") if r.value is True],
            timeout=15,
            what="space_1",
        )
        space_1 = seen.of("cam.space_1_occupied")
        assert space_1[0].value is False, "the empty space was reported free first"
        # the block's arrival is a burst of motion; the point changed no sooner than `hold` after it
        arrival = next(r for r in seen.of("cam.motion") if (r.value or 0) > 5)
        assert occupied[0].ts - arrival.ts >= HOLD * 0.9, occupied[0].ts - arrival.ts
        assert [r.value for r in seen.of("cam.space_2_occupied")] == [False]
        assert rt.hub.latest["cam.space_2_occupied"].value is False
