"""The store owns its SQL: no SQL against the journal's tables (journal, cursors, counters, meta)
or the trend index's (minute, events, trend.*) outside edge/store/, no condition on the journal's
columns handed to the store from outside, no reach into the journal's connections or its private
query method, and no store read that takes SQL text. Everything else reads through the store's
named queries (`edge.store.reader`, `edge.store.trend`), so a change of schema or connection is
made in one place.

The scans read the string literals of the code with `ast` (implicitly joined strings, f-strings
and `+` concatenations as one text), so SQL split over several lines or assembled from pieces is
seen as a whole. bench/ is left out on purpose: the benchmarks time the raw SELECT as the floor
the store's reads are measured against; tests/ may open a journal's connection to check it.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("edge", "rules", "drivers", "scripts")  # the code that runs on the gateway
OWNER = Path("edge") / "store"
JOURNAL = Path("edge") / "store" / "journal.py"
TABLES = r"(?:main\.)?(?:journal|cursors|counters|meta|minute|events)\b|trend\w*(?:\.\w+)?"
STATEMENT = re.compile(rf"\b(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+(?:{TABLES})|\bjournal\s+WHERE\b")
# a bare condition on the journal's columns: what a caller would pass to the store as a WHERE
CONDITION = re.compile(
    r"\b(?:seq|ts|point|value|quality|kind|severity|source|payload)\s*"
    r"(?:=|!=|<>|<=?|>=?|\bIS\b|\bIN\b|\bLIKE\b)\s*(?:\?|'|NULL\b|NOT\b|\d)"
)
SQL_KEYWORD = re.compile(r"\b(?:SELECT|INSERT|UPDATE|DELETE|CREATE|WITH|FROM|PRAGMA)\b")
# the journal's connections and its SQL entry point
PRIVATE = {"_query", "_conn", "conn", "_read", "_w", "_read_lock", "query", "execute"}
SQL_PARAMS = {"where", "sql", "clause", "query", "condition", "conditions", "conds", "fragment", "order_by"}


def _text(node: ast.AST) -> str | None:
    """The text of a string expression: a literal, an f-string (each field as `{}`) or a `+` of
    those; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) or "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of every string expression in `tree` but docstrings, each whole (the parts of
    an f-string or of a concatenation are not listed again on their own)."""
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and _text(body[0].value) is not None:
                inner.add(id(body[0].value))
    for node in ast.walk(tree):
        if id(node) in inner:
            if isinstance(node, ast.JoinedStr | ast.BinOp):
                inner.update(id(n) for n in ast.walk(node))
            continue
        text = _text(node)
        if text is None:
            continue
        inner.update(id(n) for n in ast.walk(node) if n is not node)
        yield getattr(node, "lineno", 0), text


def _names_the_journal(node: ast.expr) -> bool:
    """`journal`, `self.journal`, `runtime.journal`, `j`-less aliases aside: an expression whose
    last name says it is a journal or a journal reader (`svc.reader`, `self.readers[0]`)."""
    while isinstance(node, ast.Subscript | ast.Call):
        node = node.value if isinstance(node, ast.Subscript) else node.func
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    name = name.lower().lstrip("_")
    return "journal" in name or name in ("reader", "readers")


def stray_sql(root: Path) -> list[str]:
    """`file:line: text` of every place in `root`'s runtime packages, outside edge/store/, that
    queries the store's tables itself or hands the store a condition on the journal's columns."""
    found = []
    for rel, tree in _modules(root):
        if rel.is_relative_to(OWNER):
            continue
        for line, text in sorted(strings(tree)):
            bare_condition = CONDITION.search(text) and not SQL_KEYWORD.search(text)
            if STATEMENT.search(text) or bare_condition:
                found.append(f"{rel}:{line}: {' '.join(text.split())}")
    return found


def private_journal_access(root: Path) -> list[str]:
    """`file:line: expression` of every use of the journal's connections or of its private query
    method outside edge/store/journal.py."""
    found = []
    for rel, tree in _modules(root):
        if rel == JOURNAL:
            continue
        for node in sorted(
            ast.walk(tree), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0))
        ):
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE and _names_the_journal(node.value):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return found


def _modules(root: Path) -> Iterator[tuple[Path, ast.Module]]:
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            yield path.relative_to(root), ast.parse(path.read_text(encoding="utf-8"), str(path))


def sql_parameters(functions: dict[str, Callable[..., Any]]) -> list[str]:
    """`name(parameter)` of every parameter of `functions` named like SQL text."""
    return [
        f"{name}({param})"
        for name, fn in functions.items()
        for param in inspect.signature(fn).parameters
        if param.lower().strip("_") in SQL_PARAMS
    ]


def store_reads() -> dict[str, Callable[..., Any]]:
    """The public methods of the store's readers, and the trend index's history read."""
    from edge.store.journal import Journal
    from edge.store.reader import JournalQueries, JournalReader
    from edge.store.trend import TrendIndex, history_buckets

    reads: dict[str, Callable[..., Any]] = {"history_buckets": history_buckets}
    for cls in (JournalQueries, JournalReader, Journal, TrendIndex):
        for name, fn in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("_"):
                reads[f"{cls.__name__}.{name}"] = fn
    return reads


def test_no_sql_against_the_stores_tables_outside_edge_store() -> None:
    assert stray_sql(ROOT) == [], "query through a named read of edge.store.reader instead"


def test_nothing_outside_the_journal_uses_its_connections() -> None:
    assert private_journal_access(ROOT) == [], "add a named read to edge.store.reader instead"


def test_the_stores_reads_take_no_sql_text() -> None:
    reads = store_reads()
    assert "JournalQueries.newest_events" in reads and "TrendIndex.read_events" in reads
    assert sql_parameters(reads) == [], "say what to read (e.g. edge.store.rows.EventMatch), not how"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_the_scan_finds_each_kind_of_stray_query(tmp_path: Path) -> None:
    """The check above must not pass because its patterns went blind."""
    lines = [
        'rows = conn.execute("SELECT seq, updated FROM cursors WHERE name=?", (n,))',
        'x = "INSERT INTO cursors(name, kind, seq, updated) VALUES(?,?,?,?)"',
        'x = "SELECT kind FROM journal WHERE seq=?"',
        'x = "SELECT MIN(seq) FROM main.journal"',
        'x = f"SELECT point, bucket FROM minute WHERE point = {p}"',
        'x = "SELECT seq FROM trend.events WHERE kind = ?"',
        'x = "SELECT count(*) " "FROM journal " "WHERE seq > ?"',
        'x = "SELECT count(*) " + "FROM journal"',
        'x = "SELECT 1 FROM trend_buckets"',
        "rows = scan(\"kind = 'alert'\", (), 10)",
        'where = "point = ? AND kind IS NULL AND ts >= ?"',
        'cond = f"{col} = ?" if x else "seq < ?"',
    ]
    split_query = 'x = (\n    "SELECT ts, value "\n    f"FROM journal WHERE point = {p}"\n)\n'
    root = _tree(
        tmp_path,
        {
            "edge/web/view.py": "\n".join(lines) + "\n" + split_query,
            "rules/fine.py": (
                '"""Rows FROM journal WHERE seq > ? are documented, not run."""\n'
                'log.info("measurements turned into events")\n'
                'SQL = "SELECT name FROM users WHERE name = ?"\n'
                'conn.execute("DELETE FROM login_throttle WHERE name=? AND source=?")\n'
            ),
            "edge/store/reader.py": 'x = "SELECT seq FROM journal WHERE seq > ?"\nw = "kind IS NULL"\n',
        },
    )
    found = stray_sql(root)
    split_at = len(lines) + 2  # the line the split query's first part is on
    assert [int(f.split(":")[1]) for f in found] == [*range(1, len(lines) + 1), split_at], "\n".join(found)
    assert found[-1] == f"edge/web/view.py:{split_at}: SELECT ts, value FROM journal WHERE point = {{}}"


def test_the_scan_finds_each_reach_into_the_journal(tmp_path: Path) -> None:
    bad = [
        "rows = journal._query('PRAGMA page_count')",
        "tail = trend.journal._query(sql, args)",
        "c = runtime.journal._conn",
        "c = self.journal.conn",
        "live = journal._w is not None",
        "rows = self.readers[0]._read.execute(sql)",
        "rows = get_journal()._query(sql)",
        "rows = journal.query(sql)",
    ]
    fine = [
        "rows = self._query(sql)",  # a reader's own method, inside the store
        "state.conn.execute(sql)",  # the state DB, not the journal
        "first = journal.first_at_or_after(0)",
    ]
    root = _tree(
        tmp_path,
        {
            "edge/store/health.py": "\n".join(bad + fine) + "\n",
            "edge/store/journal.py": "\n".join(bad) + "\n",
        },
    )
    found = private_journal_access(root)
    assert [int(f.split(":")[1]) for f in found] == list(range(1, len(bad) + 1)), "\n".join(found)


def test_the_parameter_check_finds_sql_text() -> None:
    def newest_rows(where: str, args: tuple[Any, ...], after: int, limit: int) -> None: ...

    def read_events(self: Any, match: Any, limit: int) -> None: ...

    assert sql_parameters({"newest_rows": newest_rows, "read_events": read_events}) == ["newest_rows(where)"]


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
