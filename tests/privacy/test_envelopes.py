"""An envelope opens only on its own row, only where the site's keys are: moved to another
record, or read by a process without the master key, it reads as sealed, never as another's."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from edge.privacy.atrest import Sealer
from edge.state import StateDB
from edge.store.journal import Journal
from edge.sync import deadletters
from tests.privacy.conftest import RESIDENT, SYSTOLIC, measurement
from tests.store.helpers import open_journal


async def test_a_moved_envelope_does_not_open_as_the_other_record(tmp_path: Path, master: Path) -> None:
    sealer = Sealer.open(tmp_path / "edge.db", str(master))
    j = open_journal(tmp_path, sealer=sealer)
    try:
        now = time.time()
        j.append([measurement(now), measurement(now + 1, resident="R-55555", systolic=99)])
        await j.flush()
        assert [r["payload"]["systolic_mmhg"] for r in j.read(0, 10)] == [SYSTOLIC, 99]
        raw = sqlite3.connect(tmp_path / "edge.db", isolation_level=None)
        (a,), (b,) = raw.execute("SELECT payload FROM journal ORDER BY seq").fetchall()
        assert type(a) is bytes and type(b) is bytes
        raw.execute("UPDATE journal SET payload = ? WHERE seq = 1", (b,))  # the second one's envelope
        raw.close()
        assert [r["payload"] for r in j.read(0, 10)] == [
            {"sealed": True},
            {"resident": "R-55555", "systolic_mmhg": 99, "diastolic_mmhg": 71},
        ]
    finally:
        await j.close()
    # a tool without the master key reads the journal: the sealed payloads say so, nothing breaks
    reader = Journal.open_readonly(str(tmp_path / "edge.db"))
    try:
        assert [r["payload"] for r in reader.read(0, 10)] == [{"sealed": True}, {"sealed": True}]
    finally:
        reader.close_sync()


def test_a_sensitive_dead_letter_is_sealed_and_bound_to_its_sink_and_seq(
    tmp_path: Path, master: Path
) -> None:
    from edge.store.rows import register, unregister

    sealer = Sealer.open(tmp_path / "edge.db", str(master))
    state = StateDB(str(tmp_path / "state.db"))
    register(state.path, sealer)
    try:
        deadletters.ensure(state)
        record = {
            "seq": 7,
            "type": "event",
            "kind": "blood_pressure",
            "source": "kiosk-1",
            "payload": {"resident": RESIDENT},
        }
        deadletters.add(state, "city", 7, record, 400, f"refused {RESIDENT}")
        public = {
            "seq": 8,
            "type": "event",
            "kind": "bin_full",
            "source": "bin-1",
            "payload": {"fill_pct": 91},
        }
        deadletters.add(state, "city", 8, public, 400, "refused")
        listed = {d["seq"]: d for d in deadletters.listing(state, "city", None, 10)}
        assert listed[7]["record"] == record and listed[7]["response"] == ""  # the answer may quote it
        assert listed[8]["record"] == public and listed[8]["response"] == "refused"
        with state.lock:
            stored = dict(state.conn.execute("SELECT seq, record FROM sync_dead_letters").fetchall())
        assert type(stored[7]) is bytes and RESIDENT.encode() not in stored[7]
        with state.lock:
            state.conn.execute("UPDATE sync_dead_letters SET seq = 9 WHERE seq = 7")
        assert deadletters.listing(state, "city", None, 10)[-1]["record"] == {"sealed": True}
    finally:
        unregister(state.path, sealer)
        state.close()
        sealer.close()


def test_a_components_own_state_text_is_sealed_where_the_gateway_seals(tmp_path: Path, master: Path) -> None:
    """`seal_text`/`open_text`: what a component keeps of a sensitive record in the state DB (a
    rule's evaluation context) sealed under the site key, bound to where it is kept."""
    from edge.privacy.atrest import open_text, seal_text
    from edge.store.rows import register, unregister

    state = str(tmp_path / "state.db")
    assert seal_text(state, f'{{"systolic": {SYSTOLIC}}}', "rule bp-high") == f'{{"systolic": {SYSTOLIC}}}'
    sealer = Sealer.open(tmp_path / "edge.db", str(master))
    register(state, sealer)
    try:
        sealed = seal_text(state, f'{{"systolic": {SYSTOLIC}}}', "rule bp-high")
        assert type(sealed) is bytes and str(SYSTOLIC).encode() not in sealed
        assert open_text(state, sealed, "rule bp-high") == f'{{"systolic": {SYSTOLIC}}}'
        assert open_text(state, sealed, "rule other") is None  # bound to where it was kept
        assert open_text(state, "as it was", "rule bp-high") == "as it was"
    finally:
        unregister(state, sealer)
        sealer.close()
    assert open_text(state, sealed, "rule bp-high") is None  # no keys in this process
