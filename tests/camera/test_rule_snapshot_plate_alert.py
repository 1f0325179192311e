"""A rule's snapshot fired by another rule's alert on a plate is the plate's: the alert carries the
plate as its `value` about the gate's personal `last_plate`, and the picture is sealed under the
plate's key (so the plate's export lists it and forgetting the plate removes it), as the journal
seals that alert. It was sealed under the camera's key."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.privacy.keyfile import create_master_key
from tests.camera.helpers import write_video
from tests.camera.test_personal_sealed import gate_site
from tests.camera.test_snapshot_per_subject import export, still
from tests.support.site import running_site, site_file
from tests.support.waiting import until

PLATE = "沪A77321"
PACK = {
    "rules": [
        # each passage (a reading a second here) is an alert: the camera may not have a frame at the first
        {
            "id": "plate-seen",
            "when": "gate.last_plate",
            "notify": "always",
            "then": [{"alert": "plate {value}"}],
        },
        {
            "id": "snap-on-alert",
            "when": [{"event": "alert"}],
            "notify": "always",
            "then": [{"snapshot": "cam"}],
        },
    ]
}


async def test_a_snapshot_fired_by_an_alert_on_a_plate_is_the_plates(tmp_path: Path) -> None:
    master = tmp_path / "master.key"
    create_master_key(master)
    video = write_video(tmp_path / "gate.avi", still, 60, fps=15)
    doc = gate_site(video, master)
    del doc["consumers"]
    doc["devices"].append(
        {
            "id": "gate",
            "driver": "sim",
            "points": [
                {"name": "last_plate", "type": "str", "privacy": "personal", "signal": "constant",
                 "value": PLATE, "interval": "1s"},
            ],
        }
    )  # fmt: skip
    pack = tmp_path / "gate.yaml"
    pack.write_text(yaml.safe_dump(PACK, allow_unicode=True), encoding="utf-8")
    doc["rules"] = {"packs": [str(pack)]}
    async with running_site(tmp_path, doc, web=False) as rt:
        await until(lambda: rt.slots["cam"].health.state == "online", timeout=15, what="camera online")

        def snapshots() -> list[dict[str, object]]:
            return [r["payload"] for r in rt.journal.tail(200) if r.get("kind") == "snapshot"]

        await until(lambda: snapshots(), timeout=20, what="the snapshot the alert fired")
        await rt.journal.flush()
    config = site_file(tmp_path, doc)
    # every picture the alerts fired is the plate's (one frame: one copy under the plate's key)
    assert len(export(config, PLATE, tmp_path / "plate.jsonl")) == 1
