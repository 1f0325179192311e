"""The gateway tells its journal what each sink and pull consumer may receive, and the journal's
own retention passes use it: a sensitive record behind a consumer with the default `max_privacy`
(personal) is deleted at its retention without a `retention_expired` warning, a personal one
behind the same consumer is still reported as lost. On a real journal file and a real runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.model import PRIVACY_RANK, Privacy
from edge.runtime import Runtime
from tests.store.helpers import sql
from tests.store.test_retention_privacy import FakeClock, journal, private_ones_expired
from tests.support.site import load

PERSONAL, SENSITIVE = PRIVACY_RANK[Privacy.PERSONAL], PRIVACY_RANK[Privacy.SENSITIVE]


def test_the_runtime_hands_its_journal_what_each_recipient_receives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITY_TOKEN", "city-token-0123456789")
    monkeypatch.setenv("LAB_TOKEN", "lab-token-0123456789")
    site = load(
        tmp_path,
        {
            "consumers": [
                {"id": "city", "token_env": "CITY_TOKEN"},
                {"id": "lab", "token_env": "LAB_TOKEN", "max_privacy": "sensitive"},
            ],
            "upstream": [
                {"id": "central", "type": "http", "url": "http://127.0.0.1:9/ingest", "max_privacy": "public"}
            ],
        },
    )
    rt = Runtime(site)
    assert rt.journal.receives == {"city": PERSONAL, "lab": SENSITIVE, "central": 0}


async def test_the_journals_passes_owe_a_class_only_to_recipients_that_receive_it(tmp_path: Path) -> None:
    clock = FakeClock()
    j = journal(tmp_path, clock, {"sensitive": "30d", "personal": "90d"})
    try:
        j.receives = {"city": PERSONAL}  # the default max_privacy: never sensitive
        await j.register_cursor("city", "consumer", 0)  # has fetched nothing
        await private_ones_expired(j, clock)
        # two sensitive records the city could never receive; two personal ones it lost
        assert (j.counters["retention_deleted"], j.counters["retention_expired"]) == (2, 2)
        warned = sql(j, "SELECT payload FROM journal WHERE kind='retention_expired'")
        assert len(warned) == 1 and '"personal"' in warned[0][0], warned
    finally:
        await j.close()
