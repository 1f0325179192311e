"""The runtime's clock trust: checked with injected clock sources, its transitions journaled, its
snapshot in /api/v1/status, and handed to the journal's retention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.clock import ClockSample, SyncStatus
from edge.runtime import Runtime
from tests.store.helpers import sql
from tests.support.site import load
from tests.support.waiting import until
from tests.web.conftest import Client, set_up_admin

START = 1_800_000_000.0


class Clocks:
    """Wall and monotonic time, and the kernel's sync status, as the test sets them."""

    def __init__(self) -> None:
        self.wall, self.mono, self.synced = START, 100.0, False

    def sample(self) -> ClockSample:
        return ClockSample(self.wall, self.mono)

    def sync(self) -> SyncStatus:
        return SyncStatus(self.synced, "test clock")


def kinds(rt: Runtime) -> list[str]:
    rows = sql(rt.journal, "SELECT kind FROM journal WHERE kind LIKE 'clock_%' ORDER BY seq")
    return [k for (k,) in rows]


async def status(rt: Runtime) -> dict[str, Any]:
    client = Client(f"http://127.0.0.1:{rt.web_port}")
    try:
        admin = await set_up_admin(client, rt)
        return await admin.json("GET", "/api/v1/status")  # type: ignore[no-any-return]
    finally:
        await client.close()


async def test_runtime_journals_clock_trust_and_shows_it_in_status(tmp_path: Path) -> None:
    clocks = Clocks()
    site = load(
        tmp_path, {"privacy": {"retention": {"sensitive": "30d"}}, "clock": {"trust_unsynced": False}}
    )
    rt = Runtime(site, clock=lambda: clocks.wall, clock_sample=clocks.sample, clock_sync=clocks.sync)
    assert rt.journal.clock_trust is rt.clock_trust and rt.journal.classes is rt.hub
    assert rt.journal.retention_s[2] == 30 * 86400 and rt.journal.retention_s[1] == site.storage.keep_history
    rt.clock_check_interval = 0.01
    await rt.start()
    try:
        # unsynchronised and not trusted by the site: said at the first check
        await rt.journal.flush()
        assert kinds(rt) == ["clock_untrusted"]
        body = await status(rt)
        assert body["clock"]["trusted"] is False and body["clock"]["synchronised"] is False
        assert "not synchronised" in body["clock"]["reason"]
        assert body["buffer"]["retention_paused"] is None and body["buffer"]["retention_expired"] == 0
        # NTP answers after a step of 42 s: the periodic check journals the sync and its step
        clocks.synced = True
        clocks.wall += 42
        await until(lambda: rt.clock_trust.trusted, what="the periodic check")
        await rt.journal.flush()
        assert kinds(rt) == ["clock_untrusted", "clock_synced"]
        synced = sql(rt.journal, "SELECT payload FROM journal WHERE kind='clock_synced'")
        assert '"step_s":42.0' in synced[0][0]
        assert rt.status()["clock"]["trusted"] is True
    finally:
        await rt.stop()
