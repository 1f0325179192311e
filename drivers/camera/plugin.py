"""The camera manifest: `driver: camera` (capture, parking-zone occupancy, redacted snapshots).
OpenCV comes with the `camera` extra; the device model validates without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.plugins import Plugin, Spec

if TYPE_CHECKING:
    from pydantic import BaseModel

    from edge.driver import Driver


def device_model() -> type[BaseModel]:
    from drivers.camera.config import CameraDevice

    return CameraDevice


def driver() -> type[Driver]:
    from drivers.camera.driver import CameraDriver

    return CameraDriver


PLUGIN = Plugin(
    name="camera", extra="camera", requires=("cv2", "numpy"), drivers={"camera": Spec(device_model, driver)}
)
