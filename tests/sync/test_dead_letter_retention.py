"""The sinks' dead letters expire at their privacy class's retention (PIPL art. 19), on a real
gateway (journal, state database, sinks) driven by a test clock: personal and sensitive ones go once
dead-lettered longer ago than their class's retention, public ones stay; nothing goes while a jump
of the wall clock holds age-based deletion; dead letters stored before they had a class are
classified and expire alike; a record a receiver rejects is stored with its class."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from edge.clock import ClockSample, SyncStatus
from edge.model import PointInfo, PointType, Privacy, Reading
from edge.runtime import Runtime
from edge.sync import cli, deadletters
from edge.sync.base import PushSink
from edge.sync.component import SyncComponent
from tests.store.helpers import sql
from tests.support.site import load, running_site
from tests.support.waiting import until
from tests.sync.helpers import free_port, sink, wait_for

DAY = 86400.0
START = 1_800_000_000.0  # the test clock's wall time at the start (2027)
PUBLIC, PERSONAL, SENSITIVE = 0, 1, 2

PLATE = {
    "type": "reading",
    "seq": 1,
    "ts": START,
    "point": "gate.plate",
    "value": "沪A23522",
    "quality": "good",
}
KW = {"type": "reading", "seq": 2, "ts": START, "point": "gate.kw", "value": 3.5, "quality": "good"}
BP = {
    "type": "event",
    "seq": 3,
    "ts": START,
    "kind": "blood_pressure",
    "source": "kiosk",
    "severity": "info",
    "payload": {"resident": "r-17", "sys": 128},
}


class Clocks:
    """Wall and monotonic time and the kernel's sync status as the test sets them; counts the
    journal writer's reads (each retention pass reads once; the runtime's clock checks read the
    same clock on the event loop and are not counted). Like a real monotonic clock it never reads
    the same twice (a microsecond per read): a check of the clock's trust is always after, or
    before, a pass's jump."""

    def __init__(self) -> None:
        self.wall, self.mono, self.synced, self.reads = START, 100.0, False, 0
        self._ticks = itertools.count()  # atomic, from the writer thread and the event loop alike

    def sample(self) -> ClockSample:
        if threading.current_thread().name == "journal-writer":
            self.reads += 1
        return ClockSample(self.wall, self.mono + next(self._ticks) * 1e-6)

    def sync(self) -> SyncStatus:
        return SyncStatus(self.synced, "test clock")


def site(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """A site with one HTTP sink `central` (to a port nobody listens on: nothing is delivered),
    a gate with a personal and a public point, sensitive data kept 30 days and personal 90."""
    doc: dict[str, Any] = {
        "upstream": [sink(f"http://127.0.0.1:{free_port()}/ingest")],
        "devices": [
            {
                "id": "gate",
                "driver": "sim",
                "points": [
                    {
                        "name": "plate",
                        "type": "str",
                        "signal": "constant",
                        "value": "",
                        "privacy": "personal",
                    },
                    {"name": "kw", "signal": "constant", "value": 1.0},
                ],
            }
        ],
        "privacy": {"retention": {"sensitive": "30d", "personal": "90d"}},
    }
    doc.update(extra)
    return doc


def gateway(tmp_path: Path, clocks: Clocks, doc: dict[str, Any]) -> Runtime:
    rt = Runtime(
        load(tmp_path, doc),
        with_web=False,
        clock=lambda: clocks.wall,
        clock_sample=clocks.sample,
        clock_sync=clocks.sync,
    )
    rt.journal.retention_interval = 0.01
    rt.journal.expirer_interval = 0.0  # the dead letters expire at every retention pass
    rt.clock_check_interval = 0.01
    return rt


def sinks(rt: Runtime) -> dict[str, PushSink]:
    sync = rt.component(SyncComponent)
    assert sync is not None
    return sync.sinks


def dead_letter(
    rt: Runtime, sink_id: str, record: dict[str, Any], privacy: int | None, age_days: float
) -> None:
    """A dead letter of class `privacy`, dead-lettered `age_days` before the test clock's now."""
    assert rt.state is not None
    with rt.state.lock:  # an expiry pass waits: it never sees the row with the real time
        deadletters.add(rt.state, sink_id, record["seq"], record, 400, "rejected", privacy)
        rt.state.conn.execute(
            "UPDATE sync_dead_letters SET ts=? WHERE id=last_insert_rowid()", (START - age_days * DAY,)
        )


def letters(rt: Runtime) -> list[tuple[str, int, int | None, int]]:
    """(sink, seq, class, age in days) of every dead letter."""
    assert rt.state is not None
    with rt.state.lock:
        rows = rt.state.conn.execute(
            "SELECT sink, seq, privacy, ts FROM sync_dead_letters ORDER BY id"
        ).fetchall()
    return [(s, seq, p, round((START - ts) / DAY)) for s, seq, p, ts in rows]


async def passes(rt: Runtime, clocks: Clocks, n: int = 5) -> None:
    """Let at least `n` more retention passes run (each reads the clock once)."""
    target = clocks.reads + n
    await until(lambda: clocks.reads >= target, what=f"{n} retention passes")
    await rt.journal.flush()


async def expired_events(rt: Runtime) -> list[tuple[str, str, dict[str, Any]]]:
    await rt.journal.flush()
    rows = sql(
        rt.journal,
        "SELECT point, severity, payload FROM journal WHERE kind='dead_letters_expired' ORDER BY seq",
    )
    return [(source, severity, orjson.loads(payload)) for source, severity, payload in rows]


async def test_private_dead_letters_expire_at_their_class_retention_and_public_ones_stay(
    tmp_path: Path,
) -> None:
    clocks = Clocks()
    rt = gateway(tmp_path, clocks, site(tmp_path))
    await rt.start()
    try:
        central = sinks(rt)["central"]
        dead_letter(rt, "central", BP, SENSITIVE, 40)  # past 30 days: goes
        dead_letter(rt, "central", {**BP, "seq": 4}, SENSITIVE, 10)  # stays 20 days more
        dead_letter(rt, "central", PLATE, PERSONAL, 100)  # past 90 days: goes
        dead_letter(rt, "central", {**PLATE, "seq": 5}, PERSONAL, 40)
        dead_letter(rt, "central", KW, PUBLIC, 400)  # public: not expired by age
        dead_letter(rt, "removed", {**PLATE, "seq": 6}, PERSONAL, 100)  # a sink no longer configured
        await until(lambda: len(letters(rt)) == 3, what="the expired dead letters deleted")
        await passes(rt, clocks)
        assert letters(rt) == [
            ("central", 4, SENSITIVE, 10),
            ("central", 5, PERSONAL, 40),
            ("central", 2, PUBLIC, 400),
        ]
        # one event per class, with the count per sink and the retention applied
        assert await expired_events(rt) == [
            (
                "test-site",
                "info",
                {"class": "sensitive", "count": 1, "sinks": {"central": 1}, "retention_s": 30 * DAY},
            ),
            (
                "test-site",
                "info",
                {
                    "class": "personal",
                    "count": 2,
                    "sinks": {"central": 1, "removed": 1},
                    "retention_s": 90 * DAY,
                },
            ),
        ]
        # the sink counts its pending dead letters again and the ones that expired
        await until(lambda: central.status()["dead_letters"] == 3, what="the pending dead letters recounted")
        assert central.status()["dead_letters_expired"] == 2

        class Sync:
            def collect(self) -> Any:
                return rt.components["sync"].collect_metrics()

        registry = CollectorRegistry()
        registry.register(Sync())
        assert (
            'edge_sink_dead_letters_expired_total{sink="central"} 2.0' in generate_latest(registry).decode()
        )
        # `edge sync status` shows them from the saved snapshot
        await wait_for(
            lambda: cli.collect(rt.site)["sinks"][0].get("dead_letters_expired") == 2,
            10,
            "the saved snapshot",
        )
        assert cli.collect(rt.site)["sinks"][0]["dead_letters"] == 3

        # 21 days later (the monotonic clock agrees: no jump) the young sensitive one is 31 days old
        clocks.wall += 21 * DAY
        clocks.mono += 21 * DAY
        await until(lambda: len(letters(rt)) == 2, what="the sensitive dead letter at 31 days")
        assert [(s, seq, p) for s, seq, p, _age in letters(rt)] == [
            ("central", 5, PERSONAL),
            ("central", 2, PUBLIC),
        ]
        await until(lambda: central.status()["dead_letters_expired"] == 3, what="the sink's count")
        assert central.status()["dead_letters"] == 2
    finally:
        await rt.stop()


async def test_a_forward_jump_deletes_no_dead_letter_until_the_clock_is_trusted(tmp_path: Path) -> None:
    clocks = Clocks()
    rt = gateway(tmp_path, clocks, site(tmp_path))
    await rt.start()
    try:
        dead_letter(rt, "central", BP, SENSITIVE, 29.5)  # 30.5 days old by the jumped clock
        await passes(rt, clocks)
        assert len(letters(rt)) == 1
        clocks.wall += 1 * DAY  # the wall clock runs a day ahead of the 10 s that passed
        clocks.mono += 10
        await until(lambda: rt.journal.retention_paused is not None, what="the pause")
        await until(lambda: not rt.clock_trust.trusted, what="the clock untrusted after its step")
        await passes(rt, clocks, 10)
        assert len(letters(rt)) == 1 and await expired_events(rt) == []
        clocks.synced = True  # NTP answers: the wall clock is right after all
        await until(lambda: not letters(rt), what="retention resuming")
        assert [p["class"] for _s, _sev, p in await expired_events(rt)] == ["sensitive"]
    finally:
        await rt.stop()


# The sync tables as the previous release created them (migration 1 of edge/sync/deadletters.py,
# before dead letters had a class): kept here so the migration is tested from the real older file.
OLD_V1 = """
CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE sync_dead_letters (
    id INTEGER PRIMARY KEY,
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record TEXT NOT NULL,
    status INTEGER,
    response TEXT NOT NULL,
    ts REAL NOT NULL,
    retried REAL
);
CREATE INDEX sync_dead_letters_sink ON sync_dead_letters(sink, id);
CREATE TABLE sync_status (sink TEXT PRIMARY KEY, status TEXT NOT NULL, updated REAL NOT NULL);
INSERT INTO schema_versions(component, version) VALUES ('sync', 1);
"""


async def test_dead_letters_of_before_the_classes_are_classified_and_expire(tmp_path: Path) -> None:
    alert = {**BP, "seq": 7, "kind": "alert", "source": "rule-1", "payload": {"point": "gate.plate"}}
    old = sqlite3.connect(tmp_path / "state.db")
    old.executescript(OLD_V1)
    for seq, stored, age in (
        # stored as a blob: sealed, so private whatever it would read as; taken as sensitive,
        # it goes at 30 days (the bytes of a public record here: the storage decides, not them)
        (1, orjson.dumps(KW), 100),
        (2, orjson.dumps(KW), 10),
        (3, orjson.dumps(PLATE).decode(), 100),  # a personal point's reading -> goes at 90 days
        (4, orjson.dumps(PLATE).decode(), 50),
        (5, orjson.dumps(KW).decode(), 100),  # a public point's: stays
        (6, orjson.dumps(BP).decode(), 50),  # a health measurement: sensitive -> goes
        (7, orjson.dumps(alert).decode(), 10),  # an alert on the personal point: personal
        (8, "not JSON", 10),  # unreadable: taken as sensitive
    ):
        old.execute(
            "INSERT INTO sync_dead_letters(sink, seq, record, status, response, ts) VALUES (?,?,?,?,?,?)",
            ("central", seq, stored, 400, "", START - age * DAY),
        )
    old.commit()
    old.close()
    clocks = Clocks()
    rt = gateway(tmp_path, clocks, site(tmp_path))
    await rt.start()
    try:
        await until(lambda: len(letters(rt)) == 5, what="the old expired dead letters deleted")
        await passes(rt, clocks)
        assert [(seq, p) for _s, seq, p, _age in letters(rt)] == [
            (2, SENSITIVE),
            (4, PERSONAL),
            (5, PUBLIC),
            (7, PERSONAL),
            (8, SENSITIVE),
        ]
        counts = {p["class"]: p["count"] for _s, _sev, p in await expired_events(rt)}
        assert counts == {"sensitive": 2, "personal": 1}
        assert rt.state is not None and rt.state.version(deadletters.COMPONENT) == 2
    finally:
        await rt.stop()


async def test_a_rejected_record_is_dead_lettered_with_its_class(tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    rx = receiver("--poison", "kiosk.bp_sys", "--poison", "gate.plate", "--poison", "meter.kw")
    upstream = sink(rx.url, max_privacy="sensitive")
    async with running_site(tmp_path, {"upstream": [upstream]}, web=False) as rt:
        rt.hub.register_points(
            [
                PointInfo("kiosk.bp_sys", "kiosk", "bp_sys", privacy=Privacy.SENSITIVE),
                PointInfo("gate.plate", "gate", "plate", PointType.STR, privacy=Privacy.PERSONAL),
                PointInfo("meter.kw", "meter", "kw"),
            ]
        )
        t = time.time()
        rt.hub.ingest(
            [
                Reading(t, "kiosk.bp_sys", 128.0),
                Reading(t + 1e-3, "gate.plate", "沪A23522"),
                Reading(t + 2e-3, "meter.kw", 3.5),
            ]
        )
        committed = await rt.journal.flush()
        s = sinks(rt)["central"]
        await wait_for(lambda: s.cursor >= committed and s.dead_letters == 3, 20, "the three dead letters")
        with rt.state.lock:
            stored = rt.state.conn.execute(
                "SELECT record, privacy FROM sync_dead_letters ORDER BY seq"
            ).fetchall()
        assert [(orjson.loads(r)["point"], p) for r, p in stored] == [
            ("kiosk.bp_sys", SENSITIVE),
            ("gate.plate", PERSONAL),
            ("meter.kw", PUBLIC),
        ]
        assert s.status()["dead_letters"] == 3 and s.status()["dead_letters_expired"] == 0
