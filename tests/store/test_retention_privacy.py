"""Retention per privacy class on real journal files, driven by a test clock: personal and
sensitive records (and snapshot files) go at their class's retention, delivered or not, while
public ones keep today's rule; a forward jump of the wall clock deletes nothing until the clock is
trusted again; a journal of the previous schema migrates in place."""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from edge.clock import ClockConfig, ClockSample, ClockTrust, SyncStatus
from edge.config import StorageConfig
from edge.hub import Hub
from edge.model import Event, PointInfo, PointType, Privacy, Reading
from edge.privacy.config import PrivacyConfig
from edge.store import schema
from edge.store.blobs import BlobStore
from edge.store.health import buffer_health
from edge.store.journal import Journal
from tests.store.helpers import integrity, open_journal, sql
from tests.support.waiting import until

DAY = 86400.0
START = 1_800_000_000.0  # the test clock's wall time at the start (2027)


@dataclass
class FakeClock:
    """Wall and monotonic time the test moves by hand; counts the retention passes that read it.
    Like a real monotonic clock it never reads the same twice (a microsecond per read), so a check
    of the clock's trust is always after, or before, a retention pass's jump, never at it."""

    wall: float = START
    mono: float = 5000.0
    reads: int = 0
    ticks: Iterator[int] = field(default_factory=itertools.count)  # atomic, from any thread

    def sample(self) -> ClockSample:
        self.reads += 1
        return ClockSample(self.wall, self.mono + next(self.ticks) * 1e-6)

    def now(self) -> float:
        return self.wall


def site_hub() -> Hub:
    hub = Hub()
    hub.register_points(
        [
            PointInfo("kiosk.bp_sys", "kiosk", "bp_sys", privacy=Privacy.SENSITIVE),
            PointInfo("gate.plate", "gate", "plate", PointType.STR, privacy=Privacy.PERSONAL),
            PointInfo("meter.kw", "meter", "kw"),
        ]
    )
    return hub


KEEP_HISTORY = StorageConfig().keep_history


def journal(
    tmp_path: Path, clock: FakeClock, retention: dict[str, Any], keep: float | None = KEEP_HISTORY, **kw: Any
) -> Journal:
    """A journal on `clock` with the privacy `retention` and `keep` as keep_history (None: kept
    until the byte cap)."""
    return open_journal(
        tmp_path,
        keep_history=keep,
        retention_s=PrivacyConfig.model_validate({"retention": retention}).retention_s(keep),
        classes=site_hub(),
        clock=clock.now,
        clock_sample=clock.sample,
        retention_interval=0.01,
        sweep_interval=0.0,  # the look-ahead past young stamps at every pass, as fast as the passes
        **kw,
    )


def one_of_each(ts: float) -> list[Reading | Event]:
    return [
        Reading(ts, "kiosk.bp_sys", 128.0),
        Reading(ts, "gate.plate", "A23522"),
        Reading(ts, "meter.kw", 3.5),
        Event("blood_pressure", "kiosk", "info", {"resident": "r-17", "sys": 128}, ts),
        Event("snapshot", "cam", "info", {"blob": "b", "privacy": "personal"}, ts),
        Event("alert", "rule-1", "warning", {"point": "meter.kw"}, ts),
    ]


def held(j: Journal) -> list[tuple[str, str | None, int]]:
    return sql(
        j,
        "SELECT point, kind, privacy FROM journal WHERE kind IS NULL OR kind IN "
        "('blood_pressure', 'snapshot', 'alert') ORDER BY seq",
    )


async def passes(j: Journal, clock: FakeClock, n: int = 3) -> None:
    """Let `n` more retention passes run (each reads the clock once)."""
    target = clock.reads + n
    await until(lambda: clock.reads >= target, what=f"{n} retention passes")
    await j.flush()


async def private_ones_expired(j: Journal, clock: FakeClock) -> None:
    """Appends `one_of_each` 100 days old, waits until its four private records are deleted or
    expired (sensitive 30 d, personal 90 d), then lets three more passes run: what each pass
    counted and wrote is then final."""
    j.append(one_of_each(START - 100 * DAY))
    await j.flush()
    await until(
        lambda: j.counters["retention_deleted"] + j.counters["retention_expired"] == 4,
        what="private records past retention",
    )
    await passes(j, clock)


async def test_each_record_is_stored_with_its_class(tmp_path: Path) -> None:
    clock = FakeClock()
    j = journal(tmp_path, clock, {})
    try:
        # readings alone (SQLite numbers the rows), then a batch with events (explicit seqs)
        j.append([r for r in one_of_each(START) if isinstance(r, Reading)])
        await j.flush()
        j.append(one_of_each(START))
        await j.flush()
        assert held(j) == [
            ("kiosk.bp_sys", None, 2),
            ("gate.plate", None, 1),
            ("meter.kw", None, 0),
        ] * 2 + [
            ("kiosk", "blood_pressure", 2),  # a health-measurement kind
            ("cam", "snapshot", 1),  # the payload names its class
            ("rule-1", "alert", 0),  # of a public point
        ]
    finally:
        await j.close()


async def test_delivered_records_go_at_their_class_retention_and_snapshots_by_age(tmp_path: Path) -> None:
    clock = FakeClock()
    blobs = BlobStore(tmp_path / "blobs")
    old_blob = blobs.put("cam", b"a picture from 100 days ago")
    new_blob = blobs.put("cam", b"a picture from 10 days ago")
    os.utime(old_blob.path, (START - 100 * DAY, START - 100 * DAY))
    os.utime(new_blob.path, (START - 10 * DAY, START - 10 * DAY))
    j = journal(tmp_path, clock, {"sensitive": "30d", "personal": "90d", "public": "365d"}, blobs=blobs)
    try:
        for age in (100, 40, 10):
            j.append(one_of_each(START - age * DAY))
        await j.flush()
        await j.register_cursor("central", "sink", j.committed_seq)  # everything delivered
        # 100 days: sensitive and personal go (2 + 2); 40 days: sensitive (2); public stays (365 d)
        await until(lambda: j.counters["retention_deleted"] == 6, what="expiry by class")
        await passes(j, clock)
        assert j.counters["retention_deleted"] == 6 and j.counters["retention_expired"] == 0
        ages = {
            (point, kind, round((START - ts) / DAY))
            for point, kind, ts in sql(
                j,
                "SELECT point, kind, ts FROM journal WHERE kind IS NULL "
                "OR kind IN ('blood_pressure', 'snapshot', 'alert')",
            )
        }
        assert ages == {
            ("meter.kw", None, 100),
            ("rule-1", "alert", 100),
            ("gate.plate", None, 40),
            ("cam", "snapshot", 40),
            ("meter.kw", None, 40),
            ("rule-1", "alert", 40),
            *(
                (p, k, 10)
                for p, k in (
                    ("kiosk.bp_sys", None),
                    ("gate.plate", None),
                    ("meter.kw", None),
                    ("kiosk", "blood_pressure"),
                    ("cam", "snapshot"),
                    ("rule-1", "alert"),
                )
            ),
        }
        # the snapshot older than 90 days (a camera's snapshots are personal) is gone, counted
        assert not old_blob.path.exists() and new_blob.path.exists()
        assert j.counters["snapshots_expired"] == 1
        (payload,) = sql(j, "SELECT payload FROM journal WHERE kind='snapshots_expired'")
        assert orjson.loads(payload[0])["blobs"] == [old_blob.id]
        health = buffer_health(j, StorageConfig(path=j.path))
        assert health["retention_deleted"] == 6 and health["snapshots_expired"] == 1
    finally:
        await j.close()
    # persisted: a reader in another process sees the same counters
    reader = Journal.open_readonly(j.path)
    try:
        assert reader.counters["retention_deleted"] == 6 and reader.counters["snapshots_expired"] == 1
    finally:
        reader.close_sync()


async def test_undelivered_personal_data_goes_at_its_retention_the_law_wins(tmp_path: Path) -> None:
    clock = FakeClock()
    j = journal(tmp_path, clock, {"sensitive": "30d", "personal": "90d"})  # public: keep_history, 7 d
    try:
        await j.register_cursor("central", "sink", 0)  # a sink that has fetched nothing
        for age in (100, 40):
            j.append(one_of_each(START - age * DAY))
        await j.flush()
        # 100 days: sensitive + personal (4); 40 days: sensitive (2); public: kept for the sink
        await until(lambda: j.counters["retention_expired"] == 6, what="expiry before delivery")
        await passes(j, clock)
        assert j.counters["retention_expired"] == 6 and j.counters["retention_deleted"] == 0
        assert [p for p, k, _ in held(j) if k is None] == ["meter.kw", "gate.plate", "meter.kw"]
        events = [
            orjson.loads(p) for (p,) in sql(j, "SELECT payload FROM journal WHERE kind='retention_expired'")
        ]
        by_class = {e["class"]: e for e in events}
        assert sorted(by_class) == ["personal", "sensitive"] and len(events) == 2
        assert by_class["sensitive"]["count"] == 4 and by_class["personal"]["count"] == 2
        assert by_class["sensitive"]["oldest_ts"] == START - 100 * DAY
        assert by_class["sensitive"]["newest_ts"] == START - 40 * DAY
        assert "r-17" not in str(events) and "A23522" not in str(events)  # counts, never content
        health = buffer_health(j, StorageConfig(path=j.path))
        assert health["retention_expired"] == 6 and health["retention_paused"] is None
    finally:
        await j.close()


def lab_trust(clock: FakeClock) -> tuple[ClockTrust, list[bool]]:
    """A clock trust on `clock` for a box without NTP that trusts its clock (checked once:
    trusted), and the flag that says whether NTP answers (set `[0] = True` to have it)."""
    synced = [False]
    trust = ClockTrust(
        ClockConfig(trust_unsynced=True),
        "test-site",
        sync=lambda: SyncStatus(synced[0], "test"),
        clock=clock.sample,
    )
    trust.check()
    return trust, synced


async def test_a_forward_jump_deletes_nothing_until_the_clock_is_trusted(tmp_path: Path) -> None:
    clock = FakeClock()
    trust, synced = lab_trust(clock)
    assert trust.trusted  # believed without NTP, as the site says
    j = journal(tmp_path, clock, {"sensitive": "30d", "personal": "90d"}, clock_trust=trust)
    try:
        await j.register_cursor("central", "sink", 0)
        j.append(one_of_each(START - 29.5 * DAY))  # 30.5 days old by the jumped clock
        await j.flush()
        await passes(j, clock)
        rows = j.counters["rows"]
        clock.wall += 1 * DAY  # the wall clock runs a day ahead of the 10 s that passed
        clock.mono += 10
        await until(lambda: j.retention_paused is not None, what="the pause")
        assert j.retention_paused == "clock jumped forward 86390 s; waiting for a trusted clock"
        await passes(j, clock, 5)
        assert j.counters["retention_expired"] == 0 and j.counters["rows"] >= rows
        assert buffer_health(j, StorageConfig(path=j.path))["retention_paused"] == j.retention_paused
        # the clock's own check sees the step while unsynchronised: untrusted despite trust_unsynced
        assert [e.kind for e in trust.check()] == ["clock_untrusted"] and not trust.trusted
        await passes(j, clock, 5)
        assert j.counters["retention_expired"] == 0
        synced[0] = True  # NTP answers: the wall clock is right after all
        assert [e.kind for e in trust.check()] == ["clock_synced"]
        await until(lambda: j.counters["retention_expired"] == 2, what="retention resuming")
        assert j.retention_paused is None
        await j.flush()
        kinds = [k for (k,) in sql(j, "SELECT kind FROM journal WHERE kind LIKE 'retention_%' ORDER BY seq")]
        assert kinds == ["retention_paused", "retention_resumed", "retention_expired"]
    finally:
        await j.close()


async def test_a_trust_check_at_the_instant_of_the_jump_does_not_resume_deletion(tmp_path: Path) -> None:
    """The wall clock set between the clock's own check and a retention pass at the same monotonic
    instant: that check may predate the jump, so its `trusted` does not lift the pause."""
    clock = FakeClock()
    clock.ticks = itertools.repeat(0)  # a monotonic clock too coarse to tell the two reads apart
    trust, synced = lab_trust(clock)
    j = journal(tmp_path, clock, {"sensitive": "30d", "personal": "90d"}, clock_trust=trust)
    try:
        await j.register_cursor("central", "sink", 0)
        j.append(one_of_each(START - 29.5 * DAY))  # 30.5 days old by the jumped clock
        await j.flush()
        await passes(j, clock)
        assert trust.check() == [] and trust.trusted  # checked at this instant, before the jump
        clock.wall += 1 * DAY
        await until(lambda: j.retention_paused is not None, what="the pause")
        await passes(j, clock, 5)
        assert j.counters["retention_expired"] == 0 and j.retention_paused is not None
        clock.ticks = itertools.count(1)  # time moves on; NTP answers: the jumped clock is right
        synced[0] = True
        trust.check()
        await until(lambda: j.counters["retention_expired"] == 2, what="retention resuming")
    finally:
        await j.close()


async def test_without_a_trust_to_ask_a_jump_pauses_one_pass(tmp_path: Path) -> None:
    clock = FakeClock()
    j = journal(tmp_path, clock, {"sensitive": "30d", "personal": "90d"})
    try:
        await j.register_cursor("central", "sink", 0)
        j.append(one_of_each(START - 29 * DAY))
        await j.flush()
        await passes(j, clock)
        clock.wall += 2 * DAY  # sensitive records of 29 days would be 31 days old by this clock
        await until(lambda: j.retention_paused is not None, what="the pause")
        assert j.counters["retention_expired"] == 0
        # the next pass without a jump measures the clocks in step again and resumes
        await until(lambda: j.counters["retention_expired"] == 2, what="retention resuming")
    finally:
        await j.close()


async def test_stores_beside_the_journal_expire_by_its_clock_and_its_pause(tmp_path: Path) -> None:
    """An expirer (the sinks' dead letters, the data keys) runs with the journal's retention
    passes, gets the trusted wall time and the retention per class, has its events journaled, and
    is not called while a clock jump holds age-based deletion."""
    clock = FakeClock()
    trust, synced = lab_trust(clock)
    calls: list[tuple[float, dict[int, float | None]]] = []

    def expire(now: float, retention_s: Mapping[int, float | None]) -> list[Event]:
        calls.append((now, dict(retention_s)))
        return [Event("thing_expired", "test-store", "info", {"count": len(calls)}, now)]

    j = journal(tmp_path, clock, {"sensitive": "30d", "personal": "90d"}, clock_trust=trust)
    j.expirer_interval = 0.0
    j.add_expirer(expire)
    try:
        await until(lambda: len(calls) >= 2, what="the expirer run by retention passes")
        assert calls[0] == (START, {0: KEEP_HISTORY, 1: 90 * DAY, 2: 30 * DAY})
        await j.flush()
        assert sql(j, "SELECT count(*) FROM journal WHERE kind = 'thing_expired'")[0][0] >= 1
        clock.wall += 2 * DAY  # a jump: no store deletes by this clock
        clock.mono += 10
        await until(lambda: j.retention_paused is not None, what="the pause")
        assert [e.kind for e in trust.check()] == ["clock_untrusted"] and not trust.trusted
        await passes(j, clock, 5)
        assert all(now == START for now, _ in calls)
        synced[0] = True  # NTP answers: the jumped clock is right
        trust.check()
        await until(lambda: calls[-1][0] == START + 2 * DAY, what="the expirer by the trusted clock")
    finally:
        await j.close()


# The journal's schema at version 2, as the previous release wrote it (edge/store/schema.py before
# version 3): kept here so the migration is tested from the real older file, not from today's code.
V2_COUNTERS = (
    "dropped_oldest",
    "dropped_newest",
    "dropped_overflow",
    "history_trimmed",
    "retention_deleted",
    "disk_full",
    "write_errors",
)
OLD_V2 = (
    """
INSERT OR IGNORE INTO counters(name, value) SELECT 'rows', count(*) FROM journal;
UPDATE counters SET value = (SELECT count(*) FROM journal) WHERE name = 'rows';
"""
    + "\n".join(f"INSERT OR IGNORE INTO counters(name, value) VALUES ('{c}', 0);" for c in V2_COUNTERS)
    + "\nINSERT OR IGNORE INTO meta(key, value) SELECT 'last_seq', coalesce(max(seq), 0) FROM journal;\n"
)
OLD_V1 = """
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    point TEXT NOT NULL,
    value,
    quality INTEGER,
    kind TEXT,
    severity TEXT,
    payload TEXT
);
CREATE TABLE cursors (name TEXT PRIMARY KEY, kind TEXT NOT NULL, seq INTEGER NOT NULL, updated REAL NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


async def test_a_journal_of_the_previous_schema_migrates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(OLD_V1 + OLD_V2)
    conn.execute("INSERT INTO meta VALUES ('schema_version', 2)")
    conn.executemany(
        "INSERT INTO journal(seq, ts, point, value, quality, kind, severity, payload) VALUES (?,?,?,?,?,?,?,?)",
        [
            (1, 1.0, "meter.kw", 2.5, 0, None, None, None),
            (2, 2.0, "kiosk", None, None, "blood_pressure", "info", '{"sys": 120}'),
            (3, 3.0, "cam", None, None, "snapshot", "info", '{"privacy": "personal"}'),
            (4, 4.0, "rule-1", None, None, "alert", "warning", "not json"),
        ],
    )
    conn.execute("UPDATE counters SET value = 4 WHERE name = 'rows'")
    conn.execute("UPDATE counters SET value = 9 WHERE name = 'retention_deleted'")
    conn.execute("UPDATE meta SET value = 4 WHERE key = 'last_seq'")
    conn.close()

    j = Journal(str(path), keep_history=None).open()
    try:
        assert sql(j, "SELECT value FROM meta WHERE key='schema_version'")[0][0] == schema.SCHEMA_VERSION == 3
        assert sql(j, "SELECT seq, privacy FROM journal ORDER BY seq") == [(1, 0), (2, 2), (3, 1), (4, 0)]
        assert j.counters["rows"] == 4 and j.counters["retention_deleted"] == 9
        assert j.counters["retention_expired"] == 0 and j.counters["snapshots_expired"] == 0
        j.append([Reading(5.0, "meter.kw", 3.0)])
        assert await j.flush() == 5
    finally:
        await j.close()
    assert integrity(str(path)) == "ok"


async def test_a_class_walk_skips_public_rows_yet_finds_every_private_row(tmp_path: Path) -> None:
    """A private class's retention walk is skipped over rows this writer journaled in other
    classes, but still reaches the rows that were there when it opened and every row of the
    class written since."""
    clock = FakeClock()
    j = journal(tmp_path, clock, {"sensitive": "3650d", "personal": "3650d"})
    try:
        j.append(one_of_each(START - 40 * DAY))  # written before the restart
        await j.flush()
    finally:
        await j.close()
    j = journal(tmp_path, clock, {"sensitive": "30d", "personal": "35d"})
    old = START - 40 * DAY

    def count(rank: int) -> int:
        return int(sql(j, "SELECT count(*) FROM journal WHERE privacy = ?", (rank,))[0][0])

    try:
        await until(lambda: count(1) == count(2) == 0, what="the private rows from before the restart")
        for _ in range(3):  # public only: both private walks are skipped over these
            j.append([Reading(old, "meter.kw", float(i)) for i in range(500)])
            await passes(j, clock, 2)
        for _ in range(3):  # sensitive only: the personal walk is skipped over these
            j.append([Reading(old, "kiosk.bp_sys", 120.0 + i) for i in range(3)])
            await passes(j, clock, 2)
            assert count(2) == 0
        j.append([Reading(old, "gate.plate", "B1234")])
        await j.flush()
        await until(lambda: count(1) == 0, what="the personal row written since")
    finally:
        await j.close()


def test_classing_a_flushs_private_readings_runs_one_statement_shape(tmp_path: Path) -> None:
    """Flushes holding 1 to 40 private points of two classes: every reading of those points gets
    its class, public ones stay 0, and the UPDATE has one text whatever the number of points
    (SQLite keeps each statement shape a connection runs compiled for as long as it is open)."""
    from edge.store.rows import class_readings, insert_readings

    path = tmp_path / "j.db"
    schema.migrate(conn := sqlite3.connect(path, isolation_level=None), str(path))
    texts: set[str] = set()

    class Recording:
        def execute(self, sql_text: str, args: Any = ()) -> Any:
            texts.add(sql_text)
            return conn.execute(sql_text, args)

    ranks = {f"gate.p{i}": 1 + i % 2 for i in range(40)}
    seq = 1
    for n in range(1, 41):
        names = [f"gate.p{i}" for i in range(n)] + ["meter.power"]
        rows = [(float(seq + k), p, float(k), 0) for k, p in enumerate(names)]
        insert_readings(conn, rows, seq)
        classes = class_readings(Recording(), names, seq, ranks)  # type: ignore[arg-type]
        assert classes == ({1, 2} if n > 1 else {1})
        got = dict(conn.execute("SELECT point, privacy FROM journal WHERE seq >= ?", (seq,)).fetchall())
        assert got == {**{p: ranks[p] for p in names[:-1]}, "meter.power": 0}
        seq += len(rows)
    assert len(texts) == 1, texts
    conn.close()
