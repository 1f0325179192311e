"""`edge rules import --dry-run` runs the import's checks and says what it would do to each rule —
new, replaced (by whom it was changed last, and whether the import would enable or disable it),
unchanged — and stores nothing: an import from the command line replaced a rule tuned and
disabled in the UI, and enabled it again, with no way to see that first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support.cli import edge_cli
from tests.support.site import site_file

PACK_V1 = """\
rules:
  - id: bin-full
    when: bin.fill
    if: value > 80
    then: [{alert: "bin full"}]
"""
PACK_V2 = """\
rules:
  - id: bin-full
    when: bin.fill
    if: value > 90
    then: [{alert: "bin full"}]
  - id: bin-empty
    when: bin.fill
    if: value < 5
    then: [{alert: "bin empty"}]
"""


def stored(state_db: Path) -> list[tuple[str, int, int]]:
    conn = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT id, version, enabled FROM rules ORDER BY id").fetchall()
    finally:
        conn.close()


def test_a_dry_run_says_what_the_import_would_replace_and_enable_and_stores_nothing(tmp_path: Path) -> None:
    config = site_file(tmp_path, {"site": {"id": "dry", "name": "d", "timezone": "UTC"}, "devices": []})
    (tmp_path / "v1.yaml").write_text(PACK_V1, encoding="utf-8")
    (tmp_path / "v2.yaml").write_text(PACK_V2, encoding="utf-8")
    done = edge_cli("rules", "import", "-c", str(config), str(tmp_path / "v1.yaml"))
    assert done.returncode == 0, done.stderr
    # tuned and disabled since, as a technician would in the UI
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        with conn:
            conn.execute("UPDATE rules SET enabled = 0 WHERE id = 'bin-full'")
    finally:
        conn.close()
    before = stored(tmp_path / "state.db")

    done = edge_cli("rules", "import", "-c", str(config), str(tmp_path / "v2.yaml"), "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("new") and "bin-empty" in line for line in lines), done.stdout
    (replaced,) = [line for line in lines if line.startswith("replaced")]
    assert "bin-full (version 1, last changed by cli (import) at" in replaced
    assert "the import would enable it" in replaced
    assert lines[-1] == "nothing was imported (dry run): 2 rules, 1 of them replacing a stored one"
    assert stored(tmp_path / "state.db") == before

    done = edge_cli("rules", "import", "-c", str(config), str(tmp_path / "v1.yaml"), "--dry-run")
    assert done.returncode == 0 and "would enable it" in done.stdout, done.stdout
    assert stored(tmp_path / "state.db") == before
