"""The camera manifest: `driver: camera` (capture, parking-zone occupancy, redacted snapshots).
OpenCV comes with the `camera` extra; the device model validates without it.

A camera with `privacy: sensitive` seals its snapshots under the site's master key: on a site
without one, `edge check` names the camera and the key to set, and `edge run` refuses to start
(the snapshots would otherwise be written in clear, or not at all)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin, Spec, StartError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from edge.config import Site
    from edge.driver import Driver
    from edge.plugins import ComponentContext


def device_model() -> type[BaseModel]:
    from drivers.camera.config import CameraDevice

    return CameraDevice


def driver() -> type[Driver]:
    from drivers.camera.driver import CameraDriver

    return CameraDriver


def check(site: Site) -> list[str]:
    from drivers.camera.config import sealing_problems

    return sealing_problems(site)


def component(ctx: ComponentContext) -> Any:
    """No component: the start of a site whose sensitive camera could not seal stops here."""
    if any(getattr(d, "driver", None) == "camera" for d in ctx.site.devices):
        problems = check(ctx.site)
        if problems:
            raise StartError("; ".join(problems))
    return None


PLUGIN = Plugin(
    name="camera",
    extra="camera",
    requires=("cv2", "numpy"),
    drivers={"camera": Spec(device_model, driver)},
    component=component,
    check=check,
)
