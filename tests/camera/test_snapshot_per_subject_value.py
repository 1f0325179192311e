"""A kiosk camera (`subject_from: kiosk-1`) attributes its snapshot to the plate an event of that
device names by its `value` about one of the site's private points (`{"point": "kiosk-1.plate",
"value": PLATE}`), as the journal seals that event under the plate's key."""

from __future__ import annotations

from pathlib import Path

from edge.model import Event, PointInfo, PointType, Privacy
from tests.camera.helpers import Collector
from tests.camera.test_snapshot_subject import camera_online, command_snapshot, export, new_kiosk_site
from tests.support.site import running_site, site_file

PLATE = "沪A88934"


async def test_an_event_naming_a_plate_by_its_value_attributes_the_snapshot_to_the_plate(
    tmp_path: Path,
) -> None:
    doc = new_kiosk_site(tmp_path)
    async with running_site(tmp_path, doc, web=False) as rt:
        seen = Collector(rt)
        await camera_online(rt)
        rt.hub.register_points(
            [PointInfo("kiosk-1.plate", "kiosk-1", "plate", type=PointType.STR, privacy=Privacy.PERSONAL)]
        )
        rt.hub.publish_event(
            Event("plate_seen", "kiosk-1", payload={"point": "kiosk-1.plate", "value": PLATE})
        )
        snap = await command_snapshot(rt, seen)
    assert snap["subject"] == PLATE and snap["subject_from"] == "kiosk-1"
    listed, _events = export(site_file(tmp_path, doc), PLATE, tmp_path / "plate.jsonl")
    assert listed == [snap["blob"]]
