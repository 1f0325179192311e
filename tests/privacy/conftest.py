"""Fixtures for sealing at rest: a site with a master key, and the raw bytes of its files."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import pytest

from edge.model import Event, Reading
from edge.privacy.keyfile import create_master_key
from tests.support.site import KIOSK_DEVICE

RESIDENT = "R-90417"  # a resident reference no other test data contains
SYSTOLIC = 14159  # a blood pressure no other record carries
SECRET_VALUE = 31337.25  # a sensitive point's reading
PLATE = "沪A77531"  # a personal (not sensitive) field: pseudonymised upstream, sealed at rest
GATE_PLATE = "沪A23522"  # what the sim gate reads: its passages and its `last_plate`
OTHER_PLATE = "沪B61804"  # the gate's other plate (kept when GATE_PLATE is forgotten)
PUBLIC_MARK = "door-7731-opened"  # a public record's text, in clear: shows the grep sees clear text


def sealed_site_text(site_id: str, devices: str) -> str:
    """A site file's text sealing at rest under the key file MASTER (the placeholder a test
    replaces with its key's path), with `devices`: the items of its `devices:` list, as text."""
    return f"\nsite: {{id: {site_id}}}\nprivacy:\n  master_key_file: MASTER\ndevices:{devices}"


SITE = sealed_site_text("sealed-site", KIOSK_DEVICE)


GATE = """
  - id: gate-1
    driver: sim
    points:
      - {name: last_plate, type: str, signal: step, values: [GATE_PLATE, OTHER_PLATE], period: 40ms,
         interval: 20ms, privacy: personal}
      - {name: loop_occupied, type: bool, signal: toggle, period: 40ms, interval: 20ms}
    events:
      - {kind: vehicle_passage, every: 30ms, payload: {plate: GATE_PLATE, direction: in, privacy: personal}}
"""


def site_doc(master: Path, gate: bool = False) -> str:
    """The kiosk site; `gate`: with a sim gate reading plates (its passages and `last_plate` are
    personal). The site file then names the gate's plates: skip it when grepping (`SITE_FILE`)."""
    doc = SITE + GATE if gate else SITE
    doc = doc.replace("GATE_PLATE", GATE_PLATE).replace("OTHER_PLATE", OTHER_PLATE)
    return doc.replace("MASTER", str(master))


SITE_FILE = ("site.yaml",)  # written by tests.support.site: the configuration, not data


def http_sink(sink_id: str, max_privacy: str, *settings: str) -> str:
    """An item of a site file's `upstream:` posting to URL (the placeholder a test replaces with
    its receiver's), batching and retrying within tens of milliseconds; `settings`: more of its
    keys, each a YAML line."""
    lines = [f"id: {sink_id}", "type: http", "url: URL", f"max_privacy: {max_privacy}", *settings]
    lines += ["batch: {max_items: 50, max_age: 50ms}", "retry: {initial: 50ms, max: 500ms}"]
    return "\n  - " + "\n    ".join(lines)


@pytest.fixture
def master(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    create_master_key(path)
    return path


def measurement(ts: float | None = None, resident: str = RESIDENT, systolic: int = SYSTOLIC) -> Event:
    """A kiosk's blood-pressure measurement (sensitive by kind) naming its resident."""
    payload = {"resident": resident, "systolic_mmhg": systolic, "diastolic_mmhg": 71}
    return Event("blood_pressure", "kiosk-1", payload=payload, ts=ts or time.time())


# Rules whose firing on a measurement quotes it (neither names the resident in a field): what a
# resident's export must list and their forgetting must shred.
BP_HIGH_RULE: dict[str, Any] = {  # an alert quoting the reading, as the shipped health pack's do
    "id": "bp-high",
    "when": [{"event": "blood_pressure"}],
    "if": "payload['systolic_mmhg'] >= 180",
    "notify": "always",
    "then": [{"alert": "reading {payload[systolic_mmhg]}/{payload[diastolic_mmhg]} mmHg"}],
}
BP_ID_RULE: dict[str, Any] = {  # a condition whose exception quotes the resident's id
    "id": "bp-id",
    "when": [{"event": "blood_pressure"}],
    "if": "int(payload['resident']) > 0",
    "then": [{"alert": "numeric id"}],
}


def measure_two_residents(rt: Any, rules: list[dict[str, Any]], other: str, other_systolic: int) -> None:
    """Stores `rules` in the running gateway `rt`, then has it ingest the resident's measurement
    (RESIDENT, SYSTOLIC) and, a second later, `other`'s: records whose firings each quote one."""
    for rule in rules:
        rt.components["rules"].put(rule, "test", "create")
    now = time.time()
    rt.hub.ingest([measurement(now, RESIDENT, SYSTOLIC), measurement(now + 1, other, other_systolic)])


def private_records(ts: float | None = None) -> list[Event | Reading]:
    """A measurement, a sensitive point's reading and a vehicle passage (personal)."""
    now = ts or time.time()
    return [
        measurement(now),
        Reading(now, "kiosk-1.last_systolic", SECRET_VALUE),
        Event("vehicle_passage", "kiosk-1", payload={"plate": PLATE, "privacy": "personal"}, ts=now),
    ]


def public_record(ts: float | None = None) -> Event:
    """A public event whose text stays in clear on disk."""
    return Event("door", "kiosk-1", payload={"note": PUBLIC_MARK}, ts=ts or time.time())


def markers() -> list[bytes]:
    """The plaintext a sealed file must not contain: as text, the reading as SQLite stores a REAL
    (big-endian IEEE 754), the plates as UTF-8 and their ASCII tail (which a JSON \\u escape of
    the first character would leave readable)."""
    plates = [p.encode() for p in (PLATE, GATE_PLATE, OTHER_PLATE)]
    tails = [p[1:].encode() for p in (PLATE, GATE_PLATE, OTHER_PLATE)]
    return [
        RESIDENT.encode(),
        str(SYSTOLIC).encode(),
        struct.pack(">d", SECRET_VALUE),
        b"31337.25",
        *plates,
        *tails,
    ]


def raw(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (databases, their -wal and -shm, snapshots), as on disk."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def plaintext_in(folder: Path, skip: tuple[str, ...] = ()) -> list[tuple[str, bytes]]:
    """(file, marker) for every marker found in clear in a file under `folder`."""
    return [
        (name, m)
        for name, data in raw(folder).items()
        if not name.startswith(skip)
        for m in markers()
        if m in data
    ]
