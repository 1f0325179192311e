"""A retention pause outlives a restart: a gateway restarted while its wall clock is still wrong
(and unsynchronised) deletes nothing by it. The kept pause ends when the kernel clock is
synchronised, or when the wall clock is set back behind the jump; real journal files, a test clock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from edge.config import StorageConfig
from edge.store.health import buffer_health
from edge.store.journal import PAUSE_META
from tests.store.helpers import sql
from tests.store.test_retention_privacy import DAY, START, FakeClock, journal, lab_trust, one_of_each, passes
from tests.support.waiting import until

RETENTION = {"sensitive": "30d", "personal": "90d"}


async def paused_then_closed(tmp_path: Path, clock: FakeClock) -> int:
    """A journal holding a 29.5-day-old sensitive record when the wall clock jumps a day ahead:
    paused, then closed. Returns its row count."""
    trust, _synced = lab_trust(clock)
    j = journal(tmp_path, clock, RETENTION, clock_trust=trust)
    try:
        await j.register_cursor("central", "sink", 0)
        j.append(one_of_each(START - 29.5 * DAY))
        await j.flush()
        await passes(j, clock)
        clock.wall += 1 * DAY
        clock.mono += 10
        await until(lambda: j.retention_paused is not None, what="the pause")
        await passes(j, clock)
        assert j.counters["retention_expired"] == 0
        return int(j.counters["rows"])
    finally:
        await j.close()


async def test_a_restart_with_the_clock_still_wrong_stays_paused_until_it_is_synchronised(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    rows = await paused_then_closed(tmp_path, clock)
    # the restart: a new clock trust that knows nothing of the step, on a box that trusts its
    # unsynchronised clock (clock.trust_unsynced) -- trusted at once
    clock.mono += 30
    trust, synced = lab_trust(clock)
    assert trust.trusted
    j = journal(tmp_path, clock, RETENTION, clock_trust=trust)
    try:
        assert j.retention_paused is not None and "before the last start" in j.retention_paused
        await passes(j, clock, 5)
        assert j.counters["retention_expired"] == 0 and j.counters["rows"] >= rows
        assert buffer_health(j, StorageConfig(path=j.path))["retention_paused"] == j.retention_paused
        trust.check()
        await passes(j, clock, 5)
        assert j.counters["retention_expired"] == 0  # trusted, but not synchronised
        synced[0] = True  # NTP answers: the wall clock is right after all
        trust.check()
        await until(lambda: j.counters["retention_expired"] == 2, what="retention resuming")
        assert j.retention_paused is None
        await j.flush()
        assert sql(j, "SELECT value FROM meta WHERE key=?", (PAUSE_META,)) == []
        kinds = [k for (k,) in sql(j, "SELECT kind FROM journal WHERE kind LIKE 'retention_%' ORDER BY seq")]
        assert kinds == ["retention_paused", "retention_resumed", "retention_expired"]
    finally:
        await j.close()
    # resumed for good: the next start is not paused
    j = journal(tmp_path, clock, RETENTION, clock_trust=lab_trust(clock)[0])
    try:
        assert j.retention_paused is None
    finally:
        await j.close()


async def test_a_kept_pause_ends_when_the_wall_clock_is_set_back_behind_the_jump(tmp_path: Path) -> None:
    clock = FakeClock()
    await paused_then_closed(tmp_path, clock)
    conn = sqlite3.connect(tmp_path / "edge.db")
    try:
        (value,) = conn.execute("SELECT value FROM meta WHERE key=?", (PAUSE_META,)).fetchone()
    finally:
        conn.close()
    kept = orjson.loads(value)
    assert kept["step"] > 0.9 * DAY and kept["landed"] >= START + DAY
    clock.wall -= 1 * DAY  # set right by hand while the gateway was stopped; never synchronised
    clock.mono += 30
    j = journal(tmp_path, clock, RETENTION, clock_trust=lab_trust(clock)[0])
    try:
        await until(lambda: j.retention_paused is None, what="the pause ending")
        # the record is 29.5 days old by the corrected clock: kept (30 d)
        assert j.counters["retention_expired"] == 0
        clock.wall += 1 * DAY
        clock.mono += 1 * DAY
        await until(lambda: j.counters["retention_expired"] == 2, what="expiry by the right clock")
    finally:
        await j.close()


async def test_an_operator_ends_a_kept_pause_with_the_gateway_stopped(tmp_path: Path) -> None:
    """A box that never synchronises, whose clock was set forward by hand and is right now: only the
    operator can say so. `edge buffer resume-retention` ends the kept pause (audited); refused
    while the site's lock is held, as by a running gateway."""
    from edge import audit
    from edge.runtime import SiteLock
    from edge.state import StateDB
    from tests.support.cli import edge_cli
    from tests.support.site import site_file

    clock = FakeClock()
    await paused_then_closed(tmp_path, clock)
    site = site_file(tmp_path, {"devices": []})
    lock = SiteLock(str(tmp_path / "edge.db"))
    lock.acquire()  # a gateway running the site
    try:
        done = edge_cli("buffer", "resume-retention", "-c", str(site))
        assert done.returncode == 1 and "is running this site" in done.stderr, done.stderr
    finally:
        lock.release()
    conn = sqlite3.connect(tmp_path / "edge.db")
    try:
        assert conn.execute("SELECT count(*) FROM meta WHERE key=?", (PAUSE_META,)).fetchone() == (1,)
    finally:
        conn.close()

    done = edge_cli("buffer", "resume-retention", "-c", str(site))
    assert done.returncode == 0, done.stderr
    assert "retention resumed" in done.stdout and "clock jumped forward" in done.stdout
    state = StateDB(str(tmp_path / "state.db"))
    try:
        (entry,) = [e for e in audit.entries(state) if e["action"] == "retention_resume"]
    finally:
        state.close()
    assert entry["actor"] == "cli"
    clock.mono += 30
    j = journal(tmp_path, clock, RETENTION, clock_trust=lab_trust(clock)[0])
    try:
        assert j.retention_paused is None
        await until(lambda: j.counters["retention_expired"] == 2, what="deletion by age again")
    finally:
        await j.close()
    done = edge_cli("buffer", "resume-retention", "-c", str(site))
    assert done.returncode == 0 and "nothing to do" in done.stdout


def as_an_earlier_release_left_it(tmp_path: Path) -> list[str]:
    """The journal as a release before the pause was kept in `meta` left it: its retention events,
    nothing in meta. Returns the kinds of those events."""
    from edge.store.journal import PAUSE_EVENTS_READ

    conn = sqlite3.connect(tmp_path / "edge.db")
    try:
        with conn:
            conn.execute("DELETE FROM meta WHERE key IN (?, ?)", (PAUSE_META, PAUSE_EVENTS_READ))
            return [k for (k,) in conn.execute("SELECT kind FROM journal WHERE kind LIKE 'retention_%'")]
    finally:
        conn.close()


async def test_a_pause_an_earlier_release_journaled_is_kept_at_the_upgrade(tmp_path: Path) -> None:
    """A release before the pause was kept in `meta` journaled it only as a `retention_paused`
    event: the first start of this release, on a clock still wrong, stays paused (it deleted every
    undelivered record past its retention by that clock)."""
    from edge.model import Event, Severity

    clock = FakeClock()
    await paused_then_closed(tmp_path, clock)
    assert as_an_earlier_release_left_it(tmp_path) == ["retention_paused"]
    clock.mono += 30
    j = journal(tmp_path, clock, RETENTION, clock_trust=lab_trust(clock)[0])
    try:
        assert j.retention_paused is not None and "before the last start" in j.retention_paused
        await passes(j, clock, 5)
        assert j.counters["retention_expired"] == 0
        # a pause resumed before the upgrade is not revived
        j.append([Event("retention_resumed", "test-site", Severity.INFO, {"paused_s": 1.0}, clock.wall)])
        await j.flush()
    finally:
        await j.close()
    as_an_earlier_release_left_it(tmp_path)
    j = journal(tmp_path, clock, RETENTION, clock_trust=lab_trust(clock)[0])
    try:
        assert j.retention_paused is None
        # that release ended a pause at its next start without a word: a pause followed by a
        # gateway_started is over too
        j.append([Event("retention_paused", "test-site", Severity.WARNING, {"step_s": 86390.0}, clock.wall)])
        j.append([Event("gateway_started", "test-site", Severity.INFO, {}, clock.wall)])
        await j.flush()
    finally:
        await j.close()
    as_an_earlier_release_left_it(tmp_path)
    j = journal(tmp_path, clock, RETENTION, clock_trust=lab_trust(clock)[0])
    try:
        assert j.retention_paused is None
    finally:
        await j.close()
