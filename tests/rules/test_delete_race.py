"""A rule deleted while another process (`edge rules import`) stores a version of it: the deletion
follows the version committed last, whichever process read the rule first. It read the rule before
its own transaction, so an import committed in between made its deletion's version number taken
(a primary-key error on `rule_versions`, a 500 from the API) or recorded an out-of-date document
as the one deleted.

Two connections on one state DB file; the import is committed by a hook on the deleting
connection, just before that connection begins its transaction, so the order is fixed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from edge.state import StateDB
from rules.store import RuleStore


def rule(name: str) -> dict[str, Any]:
    return {"id": "r", "name": name, "when": "m.v", "if": "value > 1", "then": [{"alert": name}]}


class BeforeBegin:
    """The deleting store's connection, running `hook` once just before its next BEGIN."""

    def __init__(self, conn: sqlite3.Connection, hook: Any) -> None:
        self._conn = conn
        self._hook = hook

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("BEGIN") and self._hook is not None:
            hook, self._hook = self._hook, None
            hook()
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_delete_follows_an_import_committed_before_its_transaction(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    ours, theirs = RuleStore(StateDB(path)), RuleStore(StateDB(path))
    try:
        ours.put(rule("saved in the UI"), "admin", "update")
        assert ours.get("r") is not None  # what a delete used to go by

        def imported() -> None:
            theirs.put(rule("from the pack"), "cli", "import")

        real = ours.state.conn
        ours.state.conn = BeforeBegin(real, imported)  # type: ignore[assignment]
        try:
            deleted = ours.delete("r", "tech")
        finally:
            ours.state.conn = real
        assert deleted == 3
        assert ours.get("r") is None and theirs.get("r") is None
        history = [(v["version"], v["action"]) for v in ours.versions("r")]
        assert sorted(history) == [(1, "update"), (2, "import"), (3, "delete")]
        gone = ours.version_doc("r", 3)
        assert gone is not None and gone["name"] == "from the pack"
    finally:
        ours.state.close()
        theirs.state.close()


def test_a_delete_finds_no_rule_where_another_process_deleted_it_first(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    ours, theirs = RuleStore(StateDB(path)), RuleStore(StateDB(path))
    try:
        ours.put(rule("saved in the UI"), "admin", "update")

        real = ours.state.conn
        ours.state.conn = BeforeBegin(real, lambda: theirs.delete("r", "cli"))  # type: ignore[assignment]
        try:
            assert ours.delete("r", "tech") is None
        finally:
            ours.state.conn = real
        assert sorted((v["version"], v["action"]) for v in ours.versions("r")) == [
            (1, "update"),
            (2, "delete"),
        ]
    finally:
        ours.state.close()
        theirs.state.close()
