"""A restore never lets the journal issue a seq it issued before: receivers de-duplicate by
(gateway, seq) and consumers have acknowledged seqs up to the replaced journal's last, so new
records continue above it, and the records left out are named (restore's output, a
`journal_restored` event). A state DB of a newer schema is refused by restore and at open; a
restore that brings back sealed records with no keys.db says so."""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from edge.model import Event, Reading
from edge.privacy.keyfile import create_master_key
from edge.state import StateDB, StateDBError
from tests.support.cli import answering, edge_cli, start_edge_run
from tests.support.ports import free_port
from tests.support.procs import stop_process, terminate
from tests.support.servers import serving
from tests.support.site import busy_meter, running_site, site_file
from tests.support.waiting import until, until_sync


def journal_top(path: Path) -> int:
    """The highest seq a journal file has issued (rows, meta.last_seq, cursors), -wal included."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0]
        meta = conn.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        cursor = conn.execute("SELECT coalesce(max(seq), 0) FROM cursors").fetchone()[0]
        return max(int(rows), int(meta[0]) if meta else 0, int(cursor))
    finally:
        conn.close()


def max_row(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0])
    finally:
        conn.close()


class Upstream:
    """A real HTTP receiver: every record it accepted, by seq, as often as it came."""

    def __init__(self) -> None:
        self.got: dict[int, list[tuple[Any, ...]]] = {}

    async def ingest(self, request: web.Request) -> web.Response:
        body = await request.read()
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        doc = json.loads(body)
        for r in doc.get("readings", []):
            self.got.setdefault(r["seq"], []).append(("reading", r["ts"], r["point"], r["value"]))
        for e in doc.get("events", []):
            self.got.setdefault(e["seq"], []).append(
                ("event", e["ts"], e["kind"], json.dumps(e.get("payload"), sort_keys=True))
            )
        return web.Response(status=200)

    def events(self, kind: str) -> list[tuple[int, dict[str, Any]]]:
        return [
            (seq, json.loads(rec[3]))
            for seq, recs in sorted(self.got.items())
            for rec in recs[:1]
            if rec[0] == "event" and rec[2] == kind
        ]


def readings(start: float, n: int, point: str = "meter.p0") -> list[Reading]:
    return [Reading(start + i * 1e-3, point, float(i)) for i in range(n)]


async def delivered(rt: Any) -> int:
    committed = await rt.journal.flush()
    sink = rt.components["sync"].sinks["central"]
    await until(lambda: sink.cursor >= committed, timeout=30, what="the sink to deliver everything")
    return committed


async def test_restore_continues_above_the_replaced_journal_and_names_what_it_left_out(
    tmp_path: Path,
) -> None:
    up = Upstream()
    async with serving({"/ingest": up.ingest}) as port:
        doc = {
            "site": {"id": "restore-site", "name": "restore"},
            "upstream": [
                {
                    "id": "central",
                    "type": "http",
                    "url": f"http://127.0.0.1:{port}/ingest",
                    "batch": {"max_items": 200, "max_age": "50ms"},
                    "retry": {"initial": "50ms", "max": "500ms"},
                }
            ],
        }
        config = site_file(tmp_path, doc)
        archive = tmp_path / "before.tar.gz"
        async with running_site(tmp_path, doc) as rt:
            rt.hub.ingest(readings(1_000.0, 300))
            await delivered(rt)
            done = await asyncio.to_thread(edge_cli, "backup", "-c", str(config), "--out", str(archive))
            assert done.returncode == 0, done.stderr
            # the gateway goes on and delivers records the backup does not hold
            rt.hub.ingest(readings(2_000.0, 500, "meter.p1"))
            await delivered(rt)
        journal = tmp_path / "edge.db"
        replaced = journal_top(journal)
        done = await asyncio.to_thread(edge_cli, "restore", "-c", str(config), str(archive))
        assert done.returncode == 0, done.stderr
        said = done.stdout
        restored_last = max_row(journal)
        assert restored_last < replaced

        async with running_site(tmp_path, doc) as rt:
            rt.hub.ingest(readings(3_000.0, 400, "meter.p2"))
            committed = await delivered(rt)
        # a second start says nothing more about the restore
        async with running_site(tmp_path, doc) as rt:
            await delivered(rt)

    new = [s for s, recs in up.got.items() for r in recs if r[0] == "reading" and r[2] == "meter.p2"]
    assert len(new) == 400 and min(new) > replaced  # above every seq any receiver has seen
    twice = {s: recs for s, recs in up.got.items() if len(set(recs)) > 1}
    assert not twice, f"seqs delivered with two contents: {sorted(twice)[:5]}"
    assert not [s for s, recs in up.got.items() if s > restored_last and len(recs) > 1]
    # what restore said, and where the left-out records are
    assert f"records {restored_last + 1}-{replaced} are not in the backup" in said
    assert f"kept in {tmp_path / 'edge.db.pre-restore'}" in said
    assert max_row(tmp_path / "edge.db.pre-restore") == replaced
    notes = up.events("journal_restored")
    assert len(notes) == 1, notes
    seq, payload = notes[0]
    assert seq == replaced + 1 and seq < committed
    assert payload["first_seq"] == restored_last + 1 and payload["last_seq"] == replaced
    assert payload["kept_in"] == "edge.db.pre-restore" and payload["archive"] == "before.tar.gz"
    assert payload["archive_created"]


def test_a_gateway_killed_after_the_backup_is_restored_without_reusing_its_seqs(tmp_path: Path) -> None:
    """A real `edge run` killed with SIGKILL (committed records still in the -wal): the restored
    journal still goes on above the last seq it issued."""
    port = free_port()
    config = site_file(
        tmp_path,
        {
            "site": {"id": "killed", "name": "k"},
            "web": {"listen": f"127.0.0.1:{port}"},
            "devices": [busy_meter()],
        },
    )
    journal = tmp_path / "edge.db"
    archive = tmp_path / "b.tar.gz"
    log = tmp_path / "run.log"
    edge = start_edge_run(config, log)
    try:
        asyncio.run(answering(f"http://127.0.0.1:{port}", edge))
        until_sync(lambda: max_row(journal) > 300, timeout=60, what="the gateway ingesting")
        done = edge_cli("backup", "-c", str(config), "--out", str(archive))
        assert done.returncode == 0, done.stderr
        at_backup = max_row(journal)
        until_sync(lambda: max_row(journal) > at_backup + 500, timeout=60, what="ingest after the backup")
    finally:
        stop_process(edge)  # SIGKILL
    assert Path(f"{journal}-wal").exists()
    replaced = journal_top(journal)
    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert journal_top(journal) == replaced  # meta.last_seq carries it
    edge = start_edge_run(config, log)
    try:
        asyncio.run(answering(f"http://127.0.0.1:{port}", edge))
        until_sync(lambda: max_row(journal) > replaced + 10, timeout=60, what="ingest after restore")
    finally:
        terminate(edge)
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        first = conn.execute("SELECT seq, kind FROM journal WHERE seq > ? ORDER BY seq LIMIT 1", (at_backup,))
        assert first.fetchone() == (replaced + 1, "journal_restored")
    finally:
        conn.close()


def newer_state(tmp_path: Path, component: str = "rules", version: int = 99) -> None:
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        conn.execute("UPDATE schema_versions SET version = ? WHERE component = ?", (version, component))
        conn.commit()
    finally:
        conn.close()


async def test_a_newer_state_schema_is_refused_by_restore_and_at_open(tmp_path: Path) -> None:
    doc = {"site": {"id": "schema-site", "name": "s"}}
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest(readings(1_000.0, 10))
        await rt.journal.flush()
    pack = tmp_path / "pack.yaml"
    pack.write_text("rules:\n  - {id: r1, when: meter.p0, if: value > 1, then: [{event: {kind: k}}]}\n")
    done = edge_cli("rules", "import", "-c", str(config), str(pack))
    assert done.returncode == 0, done.stderr
    newer_state(tmp_path)
    archive = tmp_path / "newer.tar.gz"
    done = edge_cli("backup", "-c", str(config), "--out", str(archive))
    assert done.returncode == 0, done.stderr
    before = (tmp_path / "edge.db").read_bytes()
    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 1
    assert "'rules' tables have schema version 99, newer than this program understands (3)" in done.stderr
    assert (tmp_path / "edge.db").read_bytes() == before and not (tmp_path / "edge.db.pre-restore").exists()


async def test_a_newer_state_schema_is_refused_at_open(tmp_path: Path) -> None:
    """The state DB itself, opened by this program: refused, not misread."""
    doc = {"site": {"id": "schema-site", "name": "s"}}
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, doc):
        pass
    pack = tmp_path / "pack.yaml"
    pack.write_text("rules:\n  - {id: r1, when: meter.p0, if: value > 1, then: [{event: {kind: k}}]}\n")
    done = edge_cli("rules", "import", "-c", str(config), str(pack))
    assert done.returncode == 0, done.stderr
    newer_state(tmp_path)
    from rules.store import MIGRATIONS

    state = StateDB(str(tmp_path / "state.db"))
    try:
        with pytest.raises(StateDBError, match=r"'rules' tables have schema version 99, newer .* \(3\)"):
            state.migrate("rules", MIGRATIONS)
    finally:
        state.close()
    done = edge_cli("rules", "export", "-c", str(config))
    assert done.returncode == 1 and "schema version 99, newer than this program" in done.stderr
    # the gateway does not start on it, and says why in one line
    done = edge_cli("run", "-c", str(config))
    assert done.returncode == 1 and "start failed: " in done.stdout + done.stderr
    assert "schema version 99, newer than this program" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "exc=" not in done.stdout


async def test_restore_warns_when_sealed_records_will_not_open(tmp_path: Path) -> None:
    master = tmp_path / "master.key"
    create_master_key(master)
    doc = f"""
site: {{id: sealed-site, name: s}}
privacy:
  master_key_file: {master}
devices:
  - id: kiosk-1
    driver: sim
    points:
      - {{name: last_systolic, signal: constant, value: 120, interval: 1h, privacy: sensitive}}
"""
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest([Event("blood_pressure", "kiosk-1", payload={"resident": "R-1", "systolic_mmhg": 131})])
        await rt.journal.flush()
    archive = tmp_path / "sealed.tar.gz"
    done = edge_cli("backup", "-c", str(config), "--out", str(archive))
    assert done.returncode == 0, done.stderr

    done = edge_cli("restore", "-c", str(config), str(archive))  # keys.db still there: silent
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    (tmp_path / "keys.db").rename(tmp_path / "keys.db.elsewhere")
    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr  # restored all the same
    assert "warning: the restored journal holds records sealed at rest" in done.stderr
    assert str(tmp_path / "keys.db") in done.stderr and "docs/fleet.md" in done.stderr
