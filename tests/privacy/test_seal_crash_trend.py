"""A site that ran in clear gets a master key: its first start seals the journal in place, then
drops the trend index, which holds clear copies. A start stopped between the two (killed, a
power cut) leaves a sealed journal and the clear index: the next start, which has nothing left to
seal, must drop the index all the same."""

from __future__ import annotations

from pathlib import Path

from edge.privacy.atrest import Sealer
from edge.store.journal import Journal
from tests.privacy.conftest import plaintext_in, private_records, site_doc
from tests.privacy.test_migration import SITE_WITHOUT_KEY
from tests.support.site import running_site


async def test_the_trend_index_is_dropped_after_a_start_stopped_between_seal_and_drop(
    tmp_path: Path, master: Path
) -> None:
    async with running_site(tmp_path, SITE_WITHOUT_KEY) as rt:  # a site that ran without a key
        rt.hub.ingest(private_records())
        await rt.journal.flush()
        await rt.components["trend"].caught_up()
    assert any(name.startswith("trend.db") for name, _ in plaintext_in(tmp_path))

    # the first keyed start, as far as it went: the journal sealed in place, the index not dropped
    journal = Journal(str(tmp_path / "edge.db")).open()
    try:
        journal.attach_sealer(Sealer.open(journal.path, str(master)))
        assert await journal.seal_existing() >= 2
    finally:
        await journal.close()
    left = plaintext_in(tmp_path)
    assert left and all(name.startswith("trend.db") for name, _ in left)

    async with running_site(tmp_path, site_doc(master)) as rt:
        assert rt.components["privacy"].status()["sealed_existing"] == 0  # nothing left to seal
        await rt.components["trend"].caught_up()
    assert plaintext_in(tmp_path) == []
    # dropped, and the mark cleared with it: the next start keeps the rebuilt index
    assert not Journal(str(tmp_path / "edge.db")).trend_index_stale()
