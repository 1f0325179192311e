"""`edge privacy export --out FILE` keeps the file's name out of the audit log: the log is kept for
good, and an operator may well name the copy after the resident it holds."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from edge import audit
from edge.state import StateDB
from tests.privacy.conftest import RESIDENT, measurement, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file


async def test_the_audit_entry_of_an_export_says_file_not_the_files_name(
    tmp_path: Path, master: Path
) -> None:
    config = site_file(tmp_path, site_doc(master))
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:
        rt.hub.ingest([measurement()])
        await rt.journal.flush()

    out = tmp_path / f"{RESIDENT}.jsonl"  # the resident's reference in the file's name
    done = edge_cli("privacy", "export", "-c", str(config), "--subject", RESIDENT, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["kind"] for line in out.read_text(encoding="utf-8").splitlines()] == [
        "blood_pressure"
    ]
    to_stdout = edge_cli("privacy", "export", "-c", str(config), "--subject", RESIDENT)
    assert to_stdout.returncode == 0, to_stdout.stderr

    state = StateDB(str(tmp_path / "state.db"))
    try:
        exports = [e for e in audit.entries(state) if e["action"] == "privacy_export"]
    finally:
        state.close()
    assert [e["detail"]["out"] for e in exports] == ["stdout", "file"]  # newest first
    assert all(RESIDENT not in orjson.dumps(e).decode() for e in exports)
