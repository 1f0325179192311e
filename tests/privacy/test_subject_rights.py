"""A resident's rights: `edge privacy export` copies what is held about them, `edge privacy
forget` shreds their data key so every copy of their sensitive records stops opening, backups
included, and the gateway journals a subject_erased notice carrying pseudonyms only."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import orjson

from edge import audit
from edge.model import Event
from edge.privacy.atrest import Sealer
from edge.privacy.pseudonym import PseudonymiseConfig, Pseudonymiser, RecordShaper, pseudonym
from edge.state import StateDB
from edge.store.journal import Journal
from edge.store.rows import register, unregister
from tests.privacy.conftest import (
    GATE_PLATE,
    OTHER_PLATE,
    RESIDENT,
    SYSTOLIC,
    measurement,
    private_records,
    raw,
    site_doc,
)
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async

OTHER = "R-20333"  # a second resident, who is not forgotten


def with_consumers(tmp_path: Path, master: Path) -> tuple[Path, dict[str, bytes]]:
    """The sealed site with two pull consumers, each with its own pseudonym key."""
    keys = {}
    consumers = []
    for cid in ("city", "police"):
        key = (cid * 16).encode()[:40]
        path = tmp_path / f"{cid}.pskey"
        path.write_bytes(key)
        path.chmod(0o600)
        keys[cid] = key
        token = tmp_path / f"{cid}.token"
        token.write_text("t" * 40)
        token.chmod(0o600)
        consumers.append(f"  - {{id: {cid}, token_file: {token}, pseudonymise: {{key_file: {path}}}}}")
    doc = site_doc(master) + "consumers:\n" + "\n".join(consumers) + "\n"
    return site_file(tmp_path, doc), keys


async def test_export_then_forget_shreds_every_copy_and_journals_pseudonyms_only(
    tmp_path: Path, master: Path
) -> None:
    config, keys = with_consumers(tmp_path, master)
    doc = config.read_text(encoding="utf-8")
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest([*private_records(), measurement(resident=OTHER, systolic=128)])
        await rt.journal.flush()
        await rt.components["trend"].caught_up()
    backup = tmp_path / "backup"
    backup.mkdir()
    for name in raw(tmp_path):
        if name.startswith(("edge.db", "trend.db", "state.db")):
            shutil.copy(tmp_path / name, backup / name)

    out = tmp_path / "export.jsonl"
    done = edge_cli("privacy", "export", "-c", str(config), "--subject", RESIDENT, "--out", str(out))
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["kind"], r["payload"]["systolic_mmhg"]) for r in exported] == [("blood_pressure", SYSTOLIC)]
    assert out.stat().st_mode & 0o077 == 0

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr
    assert "data key deleted" in done.stdout and RESIDENT not in done.stdout
    # the first export's file is there: replacing it takes --force
    again = edge_cli(
        "privacy", "export", "-c", str(config), "--subject", RESIDENT, "--out", str(out), "--force"
    )
    assert again.returncode == 0 and out.read_text(encoding="utf-8") == ""

    async with running_site(tmp_path, doc) as rt:
        await rt.journal.flush()
        records = rt.journal.read(0, 1000)
        bps = [r for r in records if r.get("kind") == "blood_pressure"]
        assert {"erased": True} in [r["payload"] for r in bps]  # erased, not an error
        assert [r["payload"]["resident"] for r in bps if "resident" in r["payload"]] == [OTHER]
        notice = next(r for r in records if r.get("kind") == "subject_erased")
        assert RESIDENT not in orjson.dumps(notice).decode()
        assert notice["payload"]["subject"].startswith("ps_")
        # each recipient receives its own pseudonym of the subject, and only its own
        row = next(r for r in rt.journal.read_rows(0, 1000) if r[5] == "subject_erased")
        for cid, key in keys.items():
            cfg = PseudonymiseConfig(key_file=str(tmp_path / f"{cid}.pskey"))
            shaper = RecordShaper(Pseudonymiser(cfg), lambda: {})
            seen = orjson.loads(shaper.apply([row])[0][7])
            assert seen == {"subject": pseudonym(key, RESIDENT)}
        assert orjson.loads(RecordShaper(None, lambda: {}).apply([row])[0][7])["subject"] is None
        assert rt.components["privacy"].status()["erasures_journaled"] == 1
    # the gateway reads it once
    async with running_site(tmp_path, doc) as rt:
        await rt.journal.flush()
        assert sum(r.get("kind") == "subject_erased" for r in rt.journal.read(0, 1000)) == 1

    state = StateDB(str(tmp_path / "state.db"))
    try:
        actions = [(e["action"], e["target"]) for e in audit.entries(state)]
    finally:
        state.close()
    assert [a for a, _ in actions if a.startswith("privacy_")] == [
        "privacy_export",
        "privacy_forget",
        "privacy_export",
    ]
    assert all(RESIDENT not in target for _, target in actions)

    # the copy taken before forget: the same envelopes, whose key is gone
    sealer = Sealer.open(tmp_path / "edge.db", str(master))
    register(backup / "edge.db", sealer)
    old = Journal.open_readonly(str(backup / "edge.db"))
    try:
        payloads = [r["payload"] for r in old.read(0, 1000) if r.get("kind") == "blood_pressure"]
        assert {"erased": True} in payloads and RESIDENT not in orjson.dumps(payloads).decode()
        assert any(p.get("resident") == OTHER for p in payloads)
    finally:
        old.close_sync()
        unregister(backup / "edge.db", sealer)
        sealer.close()


async def test_a_plate_is_exported_and_forgotten_like_a_resident(tmp_path: Path, master: Path) -> None:
    """A sim gate's passages and `last_plate` readings are sealed under the plate's own key:
    export copies them, forget shreds them (the other plate's stay readable), and a public event
    that names the plate is counted as left outside its key."""
    config = site_file(tmp_path, site_doc(master, gate=True))
    doc = config.read_text(encoding="utf-8")
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest([Event("note", "gate-1", payload={"plate": GATE_PLATE}, ts=time.time())])  # public

        async def journaled() -> bool:
            await rt.journal.flush()
            recs = rt.journal.tail(400)
            plates = {r["value"] for r in recs if r.get("point") == "gate-1.last_plate"}
            return (
                any(r.get("kind") == "vehicle_passage" for r in recs) and {GATE_PLATE, OTHER_PLATE} <= plates
            )

        await until_async(journaled, what="the gate's passages and both plates journaled")

    out = tmp_path / "plate.jsonl"
    done = edge_cli("privacy", "export", "-c", str(config), "--subject", GATE_PLATE, "--out", str(out))
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    kinds = {r.get("kind") or r["point"] for r in exported}
    assert kinds == {"vehicle_passage", "gate-1.last_plate", "note"}
    assert {r["value"] for r in exported if r["type"] == "reading"} == {GATE_PLATE}

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", GATE_PLATE)
    assert done.returncode == 0, done.stderr
    assert "data key deleted" in done.stdout and GATE_PLATE not in done.stdout
    assert "1 record names it outside its key" in done.stdout  # the public note

    sealer = Sealer.open(tmp_path / "edge.db", str(master))
    register(tmp_path / "edge.db", sealer)
    journal = Journal.open_readonly(str(tmp_path / "edge.db"))
    try:
        records = journal.read(0, 100_000)
    finally:
        journal.close_sync()
        unregister(tmp_path / "edge.db", sealer)
        sealer.close()
    passages = [r["payload"] for r in records if r.get("kind") == "vehicle_passage"]
    assert passages and all(p == {"erased": True} for p in passages)
    values = [r["value"] for r in records if r.get("point") == "gate-1.last_plate"]
    assert OTHER_PLATE in values and GATE_PLATE not in values and None in values


async def test_bad_requests_change_nothing(tmp_path: Path, master: Path) -> None:
    config, _ = with_consumers(tmp_path, master)
    blank = edge_cli("privacy", "forget", "-c", str(config), "--subject", " ")
    assert blank.returncode == 1 and "--subject" in blank.stderr
    site_key = edge_cli("privacy", "forget", "-c", str(config), "--subject", "@site")
    assert site_key.returncode == 1 and "site's own key" in site_key.stderr
    master.chmod(0o644)  # noqa: ASYNC240 - a test's own file, before the command runs
    loose = edge_cli("privacy", "export", "-c", str(config), "--subject", RESIDENT)
    assert loose.returncode == 1
    assert str(master) in loose.stderr and "0600" in loose.stderr
    assert not (tmp_path / "keys.db").exists() and not (tmp_path / "state.db").exists()


async def test_forget_while_the_gateway_runs_takes_effect_at_once(tmp_path: Path, master: Path) -> None:
    config, _ = with_consumers(tmp_path, master)
    async with running_site(tmp_path, config.read_text(encoding="utf-8")) as rt:
        rt.hub.ingest(private_records())
        await rt.journal.flush()
        done = await asyncio.to_thread(
            edge_cli, "privacy", "forget", "-c", str(config), "--subject", RESIDENT
        )
        assert done.returncode == 0, done.stderr

        async def noticed() -> bool:
            await rt.journal.flush()
            return any(r.get("kind") == "subject_erased" for r in rt.journal.tail(20))

        await until_async(noticed, what="the subject_erased notice journaled by the running gateway")
        bp = next(r for r in rt.journal.read(0, 100) if r.get("kind") == "blood_pressure")
        assert bp["payload"] == {"erased": True}
