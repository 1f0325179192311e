"""docs/storage.md stays true: its buffer health table names every field buffer_health gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import StorageConfig
from edge.store.health import buffer_health
from edge.store.journal import Journal
from tests.store.helpers import open_journal

DOC = (Path(__file__).resolve().parents[2] / "docs" / "storage.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("live", [True, False])
async def test_every_buffer_health_field_is_documented(tmp_path: Path, live: bool) -> None:
    j = open_journal(tmp_path)
    await j.register_cursor("central", "sink", 0)
    try:
        if live:
            h = buffer_health(j, StorageConfig(path=j.path))
        else:
            reader = Journal.open_readonly(j.path)
            try:
                h = buffer_health(reader, StorageConfig(path=j.path))
            finally:
                reader.close_sync()
    finally:
        await j.close()
    table = DOC[DOC.index("## Buffer health") :]
    missing = [k for k in h if f"`{k}`" not in table and f"`{k}.NAME`" not in table]
    assert not missing, f"docs/storage.md's buffer health table does not name {missing}"
    for key in h["cursors"]["central"]:
        assert f"`{key}`" in table, key
