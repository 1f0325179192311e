"""Upgrades from every earlier schema: the databases of tests/fixtures/schemas/ were written by the
code of earlier commits (their README says how); the current code opens copies of them, migrates
the journal, the state DB and the trend index, and keeps every record, cursor and rule."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.store.journal import Journal
from edge.store.schema import SCHEMA_VERSION
from edge.store.trend import SCHEMA_VERSION as TREND_VERSION
from tests.support.cli import answering, edge_cli, start_edge_run
from tests.support.ports import free_port
from tests.support.procs import stop_process, terminate
from tests.support.site import site_file
from tests.support.waiting import until_sync

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "schemas"
RELEASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "facts.json").exists())


def query(path: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def journal_rows(path: Path) -> list[Any]:
    return query(
        path, "SELECT seq, ts, point, value, quality, kind, severity, payload FROM journal ORDER BY seq"
    )


@pytest.fixture(params=RELEASES)
def old_site(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, Any], list[Any]]:
    src = FIXTURES / request.param
    for db in src.glob("*.db"):
        shutil.copyfile(db, tmp_path / db.name)
    facts = json.loads((src / "facts.json").read_text())
    assert query(tmp_path / "edge.db", "SELECT count(*) FROM journal") == [(facts["rows"],)]
    return tmp_path, facts, journal_rows(tmp_path / "edge.db")


def test_fixtures_cover_every_earlier_journal_schema() -> None:
    written = {json.loads((FIXTURES / r / "facts.json").read_text())["journal_schema"] for r in RELEASES}
    assert written >= set(range(1, SCHEMA_VERSION)), (
        "a new journal schema needs a fixture of the one before it"
    )
    assert max(written) <= SCHEMA_VERSION


def test_the_journal_migrates_keeping_records_and_cursors(
    old_site: tuple[Path, dict[str, Any], list[Any]],
) -> None:
    data, facts, before = old_site

    async def open_and_close() -> None:
        journal = Journal(str(data / "edge.db")).open()
        try:
            assert journal.cursors()["fixture-consumer"][1] == facts["cursors"]["fixture-consumer"]
        finally:
            await journal.close()

    asyncio.run(open_and_close())
    db = data / "edge.db"
    assert query(db, "SELECT value FROM meta WHERE key='schema_version'") == [(SCHEMA_VERSION,)]
    assert journal_rows(db) == before
    assert dict(query(db, "SELECT name, seq FROM cursors")) == facts["cursors"]
    assert query(db, "SELECT value FROM counters WHERE name='rows'") == [(facts["rows"],)]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


def test_the_upgraded_gateway_runs_on_the_old_files(
    old_site: tuple[Path, dict[str, Any], list[Any]],
) -> None:
    data, facts, before = old_site
    port = free_port()
    token = data / "pull.token"
    token.write_text("a-pull-token-long-enough-for-any-check-0123456789\n")
    token.chmod(0o600)
    config = site_file(
        data,
        {
            "site": {"id": "fixture-site", "name": "fixture"},
            "web": {"listen": f"127.0.0.1:{port}"},
            "devices": [
                {
                    "id": "meter",
                    "driver": "sim",
                    "points": [
                        {
                            "name": "power_kw",
                            "signal": "sine",
                            "min": 2,
                            "max": 9,
                            "period": "60s",
                            "interval": "50ms",
                        },
                        {
                            "name": "energy_kwh",
                            "signal": "counter",
                            "start": 1000,
                            "step": 0.01,
                            "interval": "50ms",
                        },
                    ],
                }
            ],
            "consumers": [{"id": "fixture-consumer", "token_file": str(token)}],
        },
    )
    edge = start_edge_run(config, data / "run.log")
    try:
        asyncio.run(answering(f"http://127.0.0.1:{port}", edge))
        assert edge.poll() is None, (data / "run.log").read_text()
        last = facts["last_seq"]
        until_sync(
            lambda: query(data / "edge.db", "SELECT max(seq) FROM journal")[0][0] > last + 20,
            timeout=60,
            what="new records after the old ones",
        )
        until_sync(
            lambda: (
                (data / "trend.db").exists()
                and query(data / "trend.db", "SELECT value FROM meta WHERE key='cursor'") >= [(last,)]
            ),
            timeout=60,
            what="the trend index caught up past the old records",
        )
    finally:
        terminate(edge)
        stop_process(edge)
    log = (data / "run.log").read_text()
    assert "Traceback" not in log, log
    assert journal_rows(data / "edge.db")[: len(before)] == before
    assert (
        dict(query(data / "edge.db", "SELECT name, seq FROM cursors"))["fixture-consumer"]
        == facts["cursors"]["fixture-consumer"]
    )
    assert query(data / "trend.db", "SELECT value FROM meta WHERE key='version'") == [(TREND_VERSION,)]
    versions = dict(query(data / "state.db", "SELECT component, version FROM schema_versions"))
    for component, version in facts.get("state_schema", {}).items():
        assert versions[component] >= version
    for db in ("edge.db", "state.db", "trend.db"):
        assert query(data / db, "PRAGMA integrity_check") == [("ok",)], db
    exported = edge_cli("rules", "export", "-c", str(config))
    assert exported.returncode == 0, exported.stderr
    assert [r["id"] for r in (yaml.safe_load(exported.stdout) or {}).get("rules") or []] == facts["rules"]
    audit = edge_cli("audit", "verify", "-c", str(config))
    assert audit.returncode == 0, audit.stdout + audit.stderr
