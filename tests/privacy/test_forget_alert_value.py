"""A rule's alert on a personal string point carries the point's value (a plate) in its payload:
it is sealed under that plate's key, exported with the plate's records and shredded by forgetting
the plate, backups included, like the point's own readings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edge.privacy.atrest import Sealer
from edge.store.journal import Journal
from edge.store.rows import register, unregister
from tests.privacy.conftest import GATE_PLATE, OTHER_PLATE, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async

PACK = """
rules:
  - id: plate-seen
    name: plate seen
    when: gate-1.last_plate
    notify: always
    then:
      - alert: "gate saw a car"
"""


def alerts_by_plate(
    journal_path: Path, site_journal: Path, master: Path
) -> dict[str, list[dict[str, object]]]:
    """The alerts of a journal file (`site_journal`, or a copy of it) as the site's keys (its
    `keys.db`) open them, by the `value` they carry ("" for one that does not open)."""
    sealer = Sealer.open(site_journal, str(master))
    register(journal_path, sealer)
    journal = Journal.open_readonly(str(journal_path))
    try:
        payloads = [r["payload"] for r in journal.read(0, 100_000) if r.get("kind") == "alert"]
    finally:
        journal.close_sync()
        unregister(journal_path, sealer)
        sealer.close()
    out: dict[str, list[dict[str, object]]] = {}
    for p in payloads:
        out.setdefault(str(p.get("value") or ""), []).append(p)
    return out


async def test_forgetting_a_plate_shreds_the_alerts_whose_value_it_is(tmp_path: Path, master: Path) -> None:
    pack = tmp_path / "plates.yaml"
    pack.write_text(PACK, encoding="utf-8")
    doc = site_doc(master, gate=True) + f"rules: {{packs: [{pack}]}}\n"
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:

        async def both_plates_alerted() -> bool:
            await rt.journal.flush()
            values = [r["payload"].get("value") for r in rt.journal.tail(400) if r.get("kind") == "alert"]
            return values.count(GATE_PLATE) >= 3 and OTHER_PLATE in values

        await until_async(both_plates_alerted, what="alerts on both plates journaled")
    backup = tmp_path / "backup"
    backup.mkdir()
    shutil.copy(tmp_path / "edge.db", backup / "edge.db")  # the gateway stopped: one file holds it all
    held = alerts_by_plate(tmp_path / "edge.db", tmp_path / "edge.db", master)
    assert held.keys() == {GATE_PLATE, OTHER_PLATE}

    out = tmp_path / "plate.jsonl"
    done = edge_cli("privacy", "export", "-c", str(config), "--subject", GATE_PLATE, "--out", str(out))
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    alerts = [r["payload"] for r in exported if r.get("kind") == "alert"]
    assert alerts == held[GATE_PLATE]  # every one, and none of the other plate's

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", GATE_PLATE)
    assert done.returncode == 0, done.stderr
    assert "0 records name it outside its key" in done.stdout

    for copy in (tmp_path / "edge.db", backup / "edge.db"):
        after = alerts_by_plate(copy, tmp_path / "edge.db", master)
        assert GATE_PLATE not in after, copy
        assert len(after[OTHER_PLATE]) == len(held[OTHER_PLATE])  # the other plate's stay readable
        erased = after[""]
        assert len(erased) == len(held[GATE_PLATE]) and all(p == {"erased": True} for p in erased)


async def test_an_alert_journaled_under_the_site_key_is_counted_as_left_by_forget(
    tmp_path: Path, master: Path
) -> None:
    """An alert on the plate point sealed under the site-wide key (as an older version journaled
    it) still opens after the plate is forgotten: forget counts it instead of saying nothing."""
    from edge.model import Event

    config = site_file(tmp_path, site_doc(master, gate=True))
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:
        sealer = rt.components["privacy"].sealer
        classes, sealer.classes = sealer.classes, None  # seals as before: nothing named by value
        try:
            payload = {"rule": "r", "point": "gate-1.last_plate", "value": GATE_PLATE, "privacy": "personal"}
            rt.hub.publish_event(Event("alert", "r", payload=payload))
            await rt.journal.flush()
        finally:
            sealer.classes = classes

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", GATE_PLATE)
    assert done.returncode == 0, done.stderr
    assert "1 record names it outside its key" in done.stdout
    assert [
        p["value"]
        for p in alerts_by_plate(tmp_path / "edge.db", tmp_path / "edge.db", master).get(GATE_PLATE, [])
    ] == [GATE_PLATE]


async def test_what_a_running_gateway_journals_after_the_key_is_deleted_is_not_counted_as_left(
    tmp_path: Path, master: Path
) -> None:
    """The gate keeps seeing the plate while it is forgotten: the passages sealed after the
    deletion are under a new key, new records, not ones the forget left behind."""
    import asyncio

    from edge.privacy import subjects

    config = site_file(tmp_path, site_doc(master, gate=True))
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:
        path = rt.journal.path

        async def passage_after(seq: int) -> bool:
            await rt.journal.flush()
            return any(
                r.get("kind") == "vehicle_passage" and r["payload"].get("plate") == GATE_PLATE
                for r in rt.journal.read(seq, 5000)
            )

        await until_async(lambda: passage_after(0), what="a passage journaled")
        upto = await asyncio.to_thread(subjects.newest_seq, path)
        assert rt.components["privacy"].sealer.keys.forget(GATE_PLATE)
        await until_async(lambda: passage_after(upto), what="a passage sealed under the plate's new key")
        private = subjects.private_points(rt.site)
        left = await asyncio.to_thread(subjects.count_in_clear, path, GATE_PLATE, private, upto)
        new = await asyncio.to_thread(subjects.count_in_clear, path, GATE_PLATE, private)
    assert left == 0
    assert new >= 1
