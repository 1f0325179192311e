"""After a restart the last known values come back from the journal: the UI shows them with their
age, deadbands continue from what was journaled, and rules' `prev` means what it meant before."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from edge.model import Reading
from tests.store.helpers import sql
from tests.support.site import running_site
from tests.support.waiting import until_async

SITE = {
    "devices": [
        {
            "id": "meter",
            "driver": "sim",
            "enabled": True,
            "points": [
                {"name": "kw", "signal": "constant", "value": 1, "interval": "1h", "deadband": 1.0},
                {"name": "door", "type": "bool", "signal": "constant", "value": False, "interval": "1h"},
            ],
        }
    ]
}


def _stopped_device(doc: dict) -> dict:  # type: ignore[type-arg]
    out = yaml.safe_load(yaml.safe_dump(doc))
    out["devices"][0]["enabled"] = False  # nothing reports after the restart: only the journal speaks
    return out


async def test_latest_values_and_deadband_survive_a_restart(tmp_path: Path) -> None:
    t = time.time()
    async with running_site(tmp_path, SITE, web=False) as rt:
        rt.hub.ingest([Reading(t, "meter.kw", 10.0), Reading(t, "meter.door", True)])
    async with running_site(tmp_path, _stopped_device(SITE), web=False) as rt:
        assert rt.hub.latest["meter.kw"] == Reading(t, "meter.kw", 10.0, 0)
        assert rt.hub.latest["meter.door"].value is True  # the bool comes back as a bool
        # 10.5 is within the deadband of the 10.0 journaled before the restart: not journaled again
        assert rt.hub.ingest([Reading(t + 1, "meter.kw", 10.5)]) == []
        assert rt.hub.ingest([Reading(t + 2, "meter.kw", 11.5)]) != []


PACK = """
- id: crossing
  name: power crosses 80
  when: meter.kw
  if: value > 80 and prev < 80
  notify: always
  then:
    - alert: "{device} crossed 80"
"""


async def test_a_rule_sees_prev_from_before_the_restart(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK)
    doc = {**SITE, "rules": {"packs": [str(pack)]}}
    t = time.time()
    async with running_site(tmp_path, doc, web=False) as rt:
        rt.hub.ingest([Reading(t, "meter.kw", 70.0)])
    async with running_site(tmp_path, _stopped_device(doc), web=False) as rt:
        rt.hub.ingest([Reading(t + 5, "meter.kw", 85.0)])  # 70 → 85 crosses 80 across the restart

        async def alerts() -> list:  # type: ignore[type-arg]
            await rt.journal.flush()
            return sql(rt.journal, "SELECT payload FROM journal WHERE kind = 'alert'")

        found: list = []  # type: ignore[type-arg]

        async def fired() -> bool:
            found[:] = await alerts()
            return bool(found)

        await until_async(fired)
        assert len(found) == 1 and "crossed 80" in found[0][0]
