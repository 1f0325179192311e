"""Personal and sensitive records are sealed before they reach any file the gateway writes, and
read back as they came by whoever may see them."""

from __future__ import annotations

import time
from pathlib import Path

from edge.model import Event
from edge.sync import deadletters
from tests.privacy.conftest import (
    GATE_PLATE,
    OTHER_PLATE,
    PLATE,
    PUBLIC_MARK,
    RESIDENT,
    SECRET_VALUE,
    SITE_FILE,
    SYSTOLIC,
    plaintext_in,
    private_records,
    public_record,
    raw,
    site_doc,
)
from tests.store.helpers import sql
from tests.support.site import running_site
from tests.support.waiting import until_async
from tests.web.conftest import signed_in_roles


async def test_no_plaintext_of_a_sensitive_record_in_any_file_while_the_api_reads_it(
    tmp_path: Path, master: Path
) -> None:
    async with running_site(tmp_path, site_doc(master)) as rt:
        rt.hub.ingest([*private_records(), public_record()])
        await rt.journal.flush()
        trend = rt.components["trend"]
        await trend.caught_up()
        record = {
            "seq": 1,
            "type": "event",
            "kind": "blood_pressure",
            "source": "kiosk-1",
            "payload": {"resident": RESIDENT, "systolic_mmhg": SYSTOLIC},
        }
        deadletters.ensure(rt.state)
        deadletters.add(rt.state, "city", 1, record, 400, f"bad systolic {SYSTOLIC}")
        passage = {"seq": 3, "type": "event", "kind": "vehicle_passage", "source": "gate-1"}
        passage["payload"] = {"plate": PLATE, "privacy": "personal"}
        deadletters.add(rt.state, "city", 3, passage, 400, f"unknown plate {PLATE}")  # personal: sealed

        # while it runs: the WAL files hold the newest pages
        assert plaintext_in(tmp_path) == []
        assert any(name.endswith("-wal") for name in raw(tmp_path))
        assert (
            PUBLIC_MARK.encode() in raw(tmp_path)["edge.db-wal"]
        )  # public data is not sealed: the grep works

        async with signed_in_roles(rt) as clients:
            events = (await clients["admin"].json("GET", "/api/v1/events?source=kiosk-1"))["events"]
            bp = next(e for e in events if e["kind"] == "blood_pressure")
            assert bp["payload"]["resident"] == RESIDENT and bp["payload"]["systolic_mmhg"] == SYSTOLIC
            tech = (await clients["technician"].json("GET", "/api/v1/events?source=kiosk-1"))["events"]
            assert next(e for e in tech if e["kind"] == "blood_pressure")["payload"] == {
                "privacy": "sensitive",
                "redacted": True,
            }
            history = "/api/v1/history?point=kiosk-1.last_systolic&since=0&resolution=raw"
            values = [r[1] for r in (await clients["admin"].json("GET", history))["readings"]]
            assert SECRET_VALUE in values
            passage = next(e for e in tech if e["kind"] == "vehicle_passage")
            assert passage["payload"]["plate"] == PLATE  # personal: a technician sees it
        letters = deadletters.listing(rt.state, "city", None, 10)
        assert letters[1]["record"]["payload"]["systolic_mmhg"] == SYSTOLIC
        assert letters[0]["record"]["payload"]["plate"] == PLATE
        assert rt.journal.tail(5)[-4]["payload"]["resident"] == RESIDENT  # the CLI's shape, opened
    assert plaintext_in(tmp_path) == []  # after the last checkpoint too


async def test_a_rule_alert_quoting_a_sensitive_value_is_sealed_too(tmp_path: Path, master: Path) -> None:
    rule = {
        "id": "bp-high",
        "when": [{"event": "blood_pressure"}],
        "if": "payload['systolic_mmhg'] >= 140",
        "then": [{"alert": "systolic {payload[systolic_mmhg]} mmHg"}],
    }
    async with running_site(tmp_path, site_doc(master)) as rt:
        rt.components["rules"].put(rule, "test", "create")
        rt.hub.ingest(
            [Event("blood_pressure", "kiosk-1", payload={"systolic_mmhg": SYSTOLIC}, ts=time.time())]
        )

        async def alerted() -> bool:
            await rt.journal.flush()
            return any(r.get("kind") == "alert" for r in rt.journal.tail(10))

        await until_async(alerted, what="the rule's alert in the journal")
        alert = next(r for r in rt.journal.tail(10) if r.get("kind") == "alert")
        assert str(SYSTOLIC) in alert["payload"]["message"]
        await rt.journal.flush()
    # the rule's own state (the record that fired it, in the state DB) is sealed too
    assert plaintext_in(tmp_path) == []


async def test_a_sensitive_point_keeps_its_last_value_across_a_restart(tmp_path: Path, master: Path) -> None:
    async with running_site(tmp_path, site_doc(master)) as rt:
        rt.hub.ingest(private_records())
        await rt.journal.flush()
    async with running_site(tmp_path, site_doc(master)) as rt:
        # what the rules took as the point's value before the kiosk reported again
        assert rt.restored_good["kiosk-1.last_systolic"].value == SECRET_VALUE


async def test_a_rule_state_sealed_at_rest_comes_back_after_a_restart(tmp_path: Path, master: Path) -> None:
    """The record that made a rule active is kept sealed in the state DB and opened again at the
    next start, so the active alert keeps what fired it."""
    rule = {
        "id": "bp-high",
        "when": [{"event": "blood_pressure"}],
        "if": "payload['systolic_mmhg'] >= 140",
        "clear_if": "payload['systolic_mmhg'] < 120",
        "then": [{"alert": "high reading"}],
    }
    async with running_site(tmp_path, site_doc(master)) as rt:
        rt.components["rules"].put(rule, "test", "create")
        rt.hub.ingest(
            [Event("blood_pressure", "kiosk-1", payload={"systolic_mmhg": SYSTOLIC}, ts=time.time())]
        )
        rr = rt.components["rules"].engine.rules["bp-high"]
        assert rr.summary == "active"
    assert plaintext_in(tmp_path) == []  # the state DB holds the args sealed
    async with running_site(tmp_path, site_doc(master)) as rt:
        rr = rt.components["rules"].engine.rules["bp-high"]
        assert rr.summary == "active"
        (state,) = rr.states.values()
        assert state.args is not None and {"systolic_mmhg": SYSTOLIC} in state.args


async def test_a_gates_plates_are_sealed_in_every_file_and_shown_only_to_roles_allowed_personal_data(
    tmp_path: Path, master: Path
) -> None:
    """A sim gate's vehicle passages and its `last_plate` readings (personal) through a real
    runtime: no plate in any byte of the journal, its WAL, the trend index or the state DB; the API
    opens them for a technician and redacts them for a viewer."""
    async with running_site(tmp_path, site_doc(master, gate=True)) as rt:
        rt.hub.ingest([public_record()])

        async def both_plates_journaled() -> bool:
            await rt.journal.flush()
            recs = rt.journal.tail(400)
            passages = [r for r in recs if r.get("kind") == "vehicle_passage"]
            plates = {r["value"] for r in recs if r.get("point") == "gate-1.last_plate"}
            return len(passages) >= 2 and {GATE_PLATE, OTHER_PLATE} <= plates

        await until_async(both_plates_journaled, what="the gate's passages and both plates journaled")
        await rt.components["trend"].caught_up()
        files = raw(tmp_path)
        assert "edge.db-wal" in files and "trend.db" in files and "state.db" in files
        assert PUBLIC_MARK.encode() in files["edge.db-wal"]  # the grep sees what is in clear
        assert plaintext_in(tmp_path, SITE_FILE) == []

        async with signed_in_roles(rt) as clients:
            events = "/api/v1/events?source=gate-1&kind=vehicle_passage"
            tech = (await clients["technician"].json("GET", events))["events"]
            assert tech and {e["payload"]["plate"] for e in tech} == {GATE_PLATE}
            viewer = (await clients["viewer"].json("GET", events))["events"]
            assert viewer and all(e["payload"] == {"privacy": "personal", "redacted": True} for e in viewer)
            history = "/api/v1/history?point=gate-1.last_plate&since=0&resolution=raw"
            values = {r[1] for r in (await clients["technician"].json("GET", history))["readings"]}
            assert {GATE_PLATE, OTHER_PLATE} <= values
            hidden = await clients["viewer"].request("GET", history)
            assert GATE_PLATE.encode() not in await hidden.read()
    assert plaintext_in(tmp_path, SITE_FILE) == []  # after the last checkpoint too


async def test_a_plate_point_keeps_its_last_value_across_a_restart(tmp_path: Path, master: Path) -> None:
    """`last_plate` is sealed under the plate's key: the next start opens it again for the rules."""
    async with running_site(tmp_path, site_doc(master, gate=True)) as rt:

        async def journaled() -> bool:
            await rt.journal.flush()
            return any(r.get("point") == "gate-1.last_plate" for r in rt.journal.tail(50))

        await until_async(journaled, what="a last_plate reading journaled")
    async with running_site(tmp_path, site_doc(master, gate=True)) as rt:
        assert rt.restored_good["gate-1.last_plate"].value in (GATE_PLATE, OTHER_PLATE)


async def test_a_personal_points_numbers_stay_clear_and_its_strings_are_sealed(
    tmp_path: Path, master: Path
) -> None:
    """What is sealed is what identifies: a personal point's strings (a plate), not its numbers,
    which keep their place in the trend rollups; a sensitive point's numbers are sealed."""
    doc = site_doc(master, gate=True).replace(
        "      - {name: loop_occupied,",
        "      - {name: occupancy, privacy: personal, signal: counter, interval: 20ms}\n"
        "      - {name: loop_occupied,",
    )
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest(private_records())

        async def journaled() -> bool:
            await rt.journal.flush()
            points = {r.get("point") for r in rt.journal.tail(200)}
            return {"gate-1.occupancy", "gate-1.last_plate"} <= points

        await until_async(journaled, what="the gate's personal points journaled")
        stored = sql(rt.journal, "SELECT point, typeof(value), privacy FROM journal WHERE kind IS NULL")
    kinds = {(p, t, c) for p, t, c in stored if p != "gate-1.loop_occupied"}
    assert ("gate-1.occupancy", "integer", 1) in kinds or ("gate-1.occupancy", "real", 1) in kinds
    assert {t for p, t, _ in kinds if p == "gate-1.occupancy"} <= {"integer", "real"}
    assert {t for p, t, _ in kinds if p == "gate-1.last_plate"} == {"blob"}
    assert {t for p, t, _ in kinds if p == "kiosk-1.last_systolic"} == {"blob"}
