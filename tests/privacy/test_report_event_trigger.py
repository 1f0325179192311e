"""The record of processing lists a rule's alert triggered by an event (`when: {event: KIND}`) at
the class of that event kind, as the gateway journals and filters it: the class the site's devices
declare for the kind, else the kind's own default (a health measurement's is sensitive). The
health pack's alerts on a kiosk's blood pressure are sensitive, withheld from a personal-class
consumer, in the report and on a running gateway alike. The demo's kiosk declares the five
measurement kinds it emits, so the demo's report lists them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge.demo.site import prepare
from edge.model import Event, Severity
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "deploy/rules/health.yaml"

SITE = """
site: {id: report-events}
devices:
  - id: kiosk-1
    driver: sim
    points: [{name: in_use, type: bool, signal: constant, value: false, interval: 1h}]
    events:
      - {kind: blood_pressure, every: 1h, generator: blood_pressure, privacy: sensitive}
  - id: door-1
    driver: sim
    points: [{name: open, type: bool, signal: constant, value: false, interval: 1h}]
    events:
      - {kind: door_badge, every: 1h, payload: {badge: B-1, privacy: personal}}
consumers:
  - {id: city-platform, token_env: EDGE_TEST_UNUSED_TOKEN}
rules:
  packs: [HEALTH, PACKS/badge.yaml, PACKS/oximeter.yaml]
"""
BADGE = """
rules:
  - {id: badge-seen, when: [{event: door_badge}], notify: always, then: [{alert: "a badge at the door"}]}
"""
OXIMETER = """
rules:
  - {id: spo2-seen, when: [{event: spo2}], notify: always, then: [{alert: "an oximeter reading"}]}
"""


def report(config: Path) -> dict[str, Any]:
    done = edge_cli("privacy", "report", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def alert_of(rep: dict[str, Any], pack: str) -> dict[str, Any]:
    [item] = [e for e in rep["events"] if e["kind"] == "alert" and pack in e["source"]]
    return item


def write_site(tmp_path: Path) -> Path:
    packs = tmp_path / "packs"
    packs.mkdir()
    (packs / "badge.yaml").write_text(BADGE, encoding="utf-8")
    (packs / "oximeter.yaml").write_text(OXIMETER, encoding="utf-8")
    return site_file(tmp_path, SITE.replace("HEALTH", str(HEALTH)).replace("PACKS", str(packs)))


async def test_an_alert_fired_by_an_event_takes_the_events_class(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    rep = report(config)
    health = alert_of(rep, "health.yaml")
    assert health["privacy"] == "sensitive"
    assert health["recipients"]["city-platform"]["receives"] == "withheld"
    assert alert_of(rep, "badge.yaml")["privacy"] == "personal"  # the class the door declares
    assert alert_of(rep, "oximeter.yaml")["privacy"] == "sensitive"  # spo2's own: no device declares it

    # the gateway journals the health pack's alert at the class the report gives it
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:
        reading = {"systolic_mmhg": 150, "diastolic_mmhg": 95, "resident": "R-1", "privacy": "sensitive"}
        rt.hub.ingest([Event("blood_pressure", "kiosk-1", Severity.INFO, reading, time.time())])
        alerts: list[dict[str, Any]] = []

        async def alerted() -> bool:
            await rt.journal.flush()
            alerts[:] = [r for r in rt.journal.read(0, 10_000) if r.get("kind") == "alert"]
            return bool(alerts)

        await until_async(alerted, what="the health pack's bp-high alert journaled")
    assert [(a["source"], a["payload"]["privacy"]) for a in alerts] == [("bp-high", health["privacy"])]


def test_the_demo_kiosk_declares_the_kinds_it_emits(tmp_path: Path) -> None:
    config = prepare(tmp_path / "demo", "127.0.0.1", 18851)
    rep = report(config)
    kiosk = {e["kind"]: e["privacy"] for e in rep["events"] if e["source"] == "kiosk-instruments"}
    assert kiosk == dict.fromkeys(
        ("blood_pressure", "weight", "body_temperature", "glucose", "spo2"), "sensitive"
    )
    assert alert_of(rep, "health.yaml")["privacy"] == "sensitive"
