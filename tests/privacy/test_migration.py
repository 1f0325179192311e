"""A journal written in clear (an older version, or a site before it had a master key) is sealed
in place at the first start with a master key, counted, and its trend index rebuilt."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from edge.store import schema
from tests.privacy.conftest import (
    PLATE,
    RESIDENT,
    SECRET_VALUE,
    SYSTOLIC,
    plaintext_in,
    private_records,
    site_doc,
)
from tests.support.site import KIOSK_DEVICE, running_site

SITE_WITHOUT_KEY = "\nsite: {id: sealed-site}\ndevices:" + KIOSK_DEVICE


def build_v1(path: Path) -> None:
    """A version-1 journal (no privacy column) holding a measurement in clear."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(schema.V1)
    conn.execute("INSERT INTO meta VALUES ('schema_version', 1), ('last_seq', 1)")
    payload = f'{{"resident":"{RESIDENT}","systolic_mmhg":{SYSTOLIC}}}'
    conn.execute(
        "INSERT INTO journal(seq, ts, point, kind, severity, payload) "
        "VALUES (1, ?, 'kiosk-1', 'blood_pressure', 'info', ?)",
        (time.time(), payload),
    )
    conn.close()


async def test_a_clear_journal_is_sealed_at_the_first_start_with_a_master_key(
    tmp_path: Path, master: Path
) -> None:
    async with running_site(tmp_path, SITE_WITHOUT_KEY) as rt:  # a site that ran without a key
        rt.hub.ingest(private_records())
        await rt.journal.flush()
        await rt.components["trend"].caught_up()
    assert plaintext_in(tmp_path)  # in clear, the trend index's copy included
    assert any(name.startswith("trend.db") for name, _ in plaintext_in(tmp_path))

    async with running_site(tmp_path, site_doc(master)) as rt:
        # the measurement, this reading and the sim's own readings of the sensitive point
        sealed = rt.journal.counters["sealed_existing"]
        assert sealed >= 2 and rt.components["privacy"].status()["sealed_existing"] == sealed
        await rt.components["trend"].caught_up()
        records = rt.journal.read(0, 100)
        bp = next(r for r in records if r.get("kind") == "blood_pressure")
        assert bp["payload"]["resident"] == RESIDENT
        assert SECRET_VALUE in [r.get("value") for r in records]
        passage = next(r for r in records if r.get("kind") == "vehicle_passage")  # personal: sealed too
        assert passage["payload"]["plate"] == PLATE
        assert plaintext_in(tmp_path) == []

    async with running_site(tmp_path, site_doc(master)) as rt:  # nothing left to seal
        assert rt.journal.counters["sealed_existing"] == sealed
        assert rt.components["privacy"].status()["sealed_existing"] == 0


async def test_a_version_1_journal_is_migrated_then_sealed(tmp_path: Path, master: Path) -> None:
    build_v1(tmp_path / "edge.db")
    async with running_site(tmp_path, site_doc(master)) as rt:
        assert rt.journal.counters["sealed_existing"] == 1
        bp = next(r for r in rt.journal.read(0, 10) if r.get("kind") == "blood_pressure")
        assert bp["payload"] == {"resident": RESIDENT, "systolic_mmhg": SYSTOLIC}
    assert plaintext_in(tmp_path) == []
