"""`edge privacy report` says what a recipient receives of a rule's alert on a personal string
point as the recipient's own filter does it: its `value` (a plate) pseudonymised with a key,
withheld without one; an alert on a public point stays clear."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from edge.privacy.pseudonym import PseudonymiseConfig, Pseudonymiser, RecordShaper, pseudonym
from tests.privacy.conftest import GATE_PLATE, OTHER_PLATE, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async

PLATES = """
rules:
  - id: plate-seen
    when: gate-1.last_plate
    notify: always
    then:
      - alert: "gate saw a car"
"""
LOOP = """
rules:
  - id: loop-busy
    when: gate-1.loop_occupied
    notify: always
    then:
      - alert: "loop occupied"
"""
KEY = b"k" * 40


def site_with_recipients(tmp_path: Path, master: Path) -> Path:
    """The sealed gate site, a pack alerting on its plate and one on its loop, and two pull
    consumers allowed personal data: `keyed` with a pseudonym key, `keyless` without one."""
    packs = []
    for name, text in (("plates", PLATES), ("loop", LOOP)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        packs.append(str(path))
    key = tmp_path / "keyed.pskey"
    key.write_bytes(KEY)
    key.chmod(0o600)
    consumers = []
    for cid, extra in (("keyed", f", pseudonymise: {{key_file: {key}}}"), ("keyless", "")):
        token = tmp_path / f"{cid}.token"
        token.write_text(cid[0] * 40)
        token.chmod(0o600)
        consumers.append(f"  - {{id: {cid}, token_file: {token}, max_privacy: personal{extra}}}")
    doc = (
        site_doc(master, gate=True) + f"rules: {{packs: {packs}}}\nconsumers:\n" + "\n".join(consumers) + "\n"
    )
    return site_file(tmp_path, doc)


def alert_item(report: dict[str, Any], pack: str) -> dict[str, Any]:
    return next(e for e in report["events"] if e["kind"] == "alert" and pack in e["source"])


async def test_the_report_judges_an_alerts_value_as_the_recipients_filter_does(
    tmp_path: Path, master: Path
) -> None:
    config = site_with_recipients(tmp_path, master)
    done = edge_cli("privacy", "report", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    plates = alert_item(report, "plates.yaml")
    assert plates["privacy"] == "personal"
    assert plates["recipients"]["keyed"] == {"receives": "pseudonymised", "fields": "value"}
    keyless = plates["recipients"]["keyless"]
    assert (keyless["receives"], keyless["withheld_fields"]) == ("fields_withheld", "value")
    loop = alert_item(report, "loop.yaml")
    assert loop["recipients"] == {"keyed": {"receives": "clear"}, "keyless": {"receives": "clear"}}

    # what the gateway sends of a real alert on the plate, through each recipient's shaper
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:

        async def plate_alerted() -> bool:
            await rt.journal.flush()
            return any(r[5] == "alert" and GATE_PLATE in (r[7] or "") for r in rt.journal.read_rows(0, 5000))

        await until_async(plate_alerted, what="an alert on the gate's plate journaled")
        rows = [
            r
            for r in rt.journal.read_rows(0, 5000)
            if r[5] == "alert" and '"gate-1.last_plate"' in (r[7] or "")
        ]
        assert rows
        cfg = PseudonymiseConfig(key_file=str(tmp_path / "keyed.pskey"))
        keyed = RecordShaper(Pseudonymiser(cfg), lambda: rt.hub.points)
        without = RecordShaper(None, lambda: rt.hub.points)
        sent_keyed = [orjson.loads(r[7]) for r in keyed.apply(rows)]
        sent_keyless = [orjson.loads(r[7]) for r in without.apply(rows)]
    assert {p["value"] for p in sent_keyed} <= {pseudonym(KEY, GATE_PLATE), pseudonym(KEY, OTHER_PLATE)}
    assert all(p["value"] is None and p["value_withheld"] for p in sent_keyless)
