"""Camera driver (`driver: camera`): capture, parking-zone occupancy, redacted snapshots as blobs.

`DRIVER` is loaded on first use, so importing this package (the web server does, for
`edge.store.blobs`) never loads OpenCV; only a site with a camera does.
"""

from __future__ import annotations

from typing import Any

from drivers.camera.config import CameraDevice, Zone


def __getattr__(name: str) -> Any:
    if name == "DRIVER":
        from drivers.camera.driver import CameraDriver

        return CameraDriver
    raise AttributeError(name)


__all__ = ["CameraDevice", "Zone"]
