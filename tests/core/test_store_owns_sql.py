"""The store owns its SQL: no SQL against the journal's tables (journal, cursors, counters, meta)
or the trend index's (minute, events) outside edge/store/. Everything else reads through the
store's named queries (`edge.store.reader`), so a change of schema or connection is made in one
place.

bench/ is left out on purpose: the benchmarks time the raw SELECT as the floor the store's reads
are measured against.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("edge", "rules", "drivers", "scripts")  # the code that runs on the gateway
OWNER = Path("edge") / "store"
TABLES = r"(?:main\.|trend\.)?(?:journal|cursors|counters|meta|minute|events)\b"
STRAY_SQL = re.compile(rf"\b(?:FROM|INTO|UPDATE|JOIN)\s+{TABLES}|\bjournal\s+WHERE\b|\bjournal\.query\(")


def stray_sql(root: Path) -> list[str]:
    """`file:line: text` of every line under `root`'s runtime packages that queries the store's
    tables itself."""
    found = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            if rel.is_relative_to(OWNER):
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if STRAY_SQL.search(line):
                    found.append(f"{rel}:{n}: {line.strip()}")
    return found


def test_no_sql_against_the_stores_tables_outside_edge_store() -> None:
    assert stray_sql(ROOT) == [], "query through a named read of edge.store.reader instead"


def test_the_scan_finds_each_kind_of_stray_query(tmp_path: Path) -> None:
    """The check above must not pass because its pattern went blind."""
    lines = [
        'rows = conn.execute("SELECT seq, updated FROM cursors WHERE name=?", (n,))',
        '"INSERT INTO cursors(name, kind, seq, updated) VALUES(?,?,?,?)"',
        '"SELECT kind FROM journal WHERE seq=?"',
        '"SELECT MIN(seq) FROM main.journal"',
        'f"SELECT point, bucket FROM minute WHERE point = ?"',
        '"SELECT seq FROM trend.events WHERE kind = ?"',
        '"SELECT count(*) " "FROM journal " "WHERE seq > ?"',
        "rows = journal.query(sql)",
    ]
    for top in ("edge/web", "rules", "edge/store"):
        (tmp_path / top).mkdir(parents=True)
    (tmp_path / "edge" / "web" / "view.py").write_text("\n".join(lines) + "\n")
    (tmp_path / "rules" / "fine.py").write_text('log.info("measurements turned into events")\n')
    (tmp_path / "edge" / "store" / "reader.py").write_text('"SELECT seq FROM journal WHERE seq > ?"\n')
    assert stray_sql(tmp_path) == [f"edge/web/view.py:{n}: {text}" for n, text in enumerate(lines, 1)]


def test_one_journal_reader_and_no_public_query() -> None:
    from edge.store.journal import Journal

    readers = [
        str(p.relative_to(ROOT))
        for top in SCANNED
        for p in (ROOT / top).rglob("*.py")
        if "class JournalReader" in p.read_text(encoding="utf-8")
    ]
    assert readers == ["edge/store/reader.py"]
    assert not hasattr(Journal, "query"), "a journal answers named reads, not SQL from its callers"
