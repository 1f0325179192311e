"""The points a camera reports. Zone points are named `<zone>_occupied`: a point name cannot hold
a dot, since rules and the pull API address points as `device.point`."""

from __future__ import annotations

from collections.abc import Iterable

from edge.model import PointInfo, PointType, Privacy, point_id

#: writable command points: writing true does the action (the value read back stays false)
COMMANDS = ("snapshot", "capture_reference")


def zone_point(zone: str) -> str:
    return f"{zone}_occupied"


def camera_points(device_id: str, zones: Iterable[str]) -> list[PointInfo]:
    """The points of camera `device_id` with the parking zones named `zones`. The id and the zone
    names are all that decides the list: `CameraDevice.point_infos` asks for it with them."""

    def info(
        name: str, kind: PointType, unit: str = "", description: str = "", writable: bool = False
    ) -> PointInfo:
        return PointInfo(
            id=point_id(device_id, name),
            device=device_id,
            name=name,
            type=kind,
            unit=unit,
            writable=writable,
            privacy=Privacy.PUBLIC,
            description=description,
        )

    out = [
        info("fps", PointType.FLOAT, "fps", "frames per second received from the source"),
        info("frames", PointType.INT, "", "frames received since the driver started"),
        info(
            "motion",
            PointType.FLOAT,
            "%",
            "share of the downscaled frame that changed since the last analysis",
        ),
        info("snapshots_deleted", PointType.INT, "", "snapshots deleted by the retention cap since start"),
        info("snapshot", PointType.BOOL, "", "write true: take a snapshot now", writable=True),
        info(
            "capture_reference",
            PointType.BOOL,
            "",
            "write true: the next frames become the empty reference of the zones",
            writable=True,
        ),
    ]
    for zone in zones:
        out.append(info(zone_point(zone), PointType.BOOL, "", f"parking space {zone} is occupied"))
    return out
