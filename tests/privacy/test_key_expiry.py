"""A data key expires with the data it sealed: once everything a key sealed is past the retention
horizon (the longer of the personal and sensitive retentions), the key is deleted like a forgotten
one, so copies of the expired records stop opening too; the site-wide key stays, a record stamped
later than its seal keeps its key, seal times cost no write per seal, a keys.db of the previous
schema gives its keys the upgrade time, and nothing expires while the clock guard holds."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.model import Event
from edge.privacy.atrest import SITE_SUBJECT, Sealer, keys_path
from edge.privacy.component import KeyExpiry, key_horizon
from edge.privacy.keys import KeyForgotten, SubjectKeys, load_master_key
from tests.store.helpers import sql
from tests.store.test_retention_privacy import DAY, START, FakeClock, journal, lab_trust, passes
from tests.support.site import running_site
from tests.support.waiting import until, until_async

KEEP = (SITE_SUBJECT,)  # as the privacy component calls expire
OLD, RECENT = "沪A10001", "R-20002"  # a plate not seen for long, a resident seen lately


class Wall:
    """A wall clock the test sets by hand."""

    def __init__(self, t: float = START) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def file_bytes(db: Path) -> bytes:
    """keys.db and whatever SQLite keeps beside it (-wal, -shm), as they are on disk."""
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def stored(db: Path, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def test_a_key_that_sealed_nothing_within_the_horizon_is_deleted_the_site_key_stays(
    tmp_path: Path, master: Path
) -> None:
    db, wall = tmp_path / "keys.db", Wall()
    with SubjectKeys(db, load_master_key(master), clock=wall) as keys:
        old = keys.seal(OLD, b"passage 1", b"aad")
        site = keys.seal(SITE_SUBJECT, b"rules state", b"aad")
        wall.t = START + 100 * DAY
        recent = keys.seal(RECENT, b"128/84", b"aad")
        assert keys.open(old, b"aad") == b"passage 1"  # its key is now cached in memory too
        wrapped = dict(stored(db, "SELECT kid, wrapped FROM subject_keys"))
        old_wrapped = wrapped[old[1:17]]
        assert old_wrapped in file_bytes(db)  # the search finds it while it exists
        backup = tmp_path / "backup-keys.db"
        src, dst = sqlite3.connect(db), sqlite3.connect(backup)
        src.backup(dst)  # a copy taken before the expiry
        src.close()
        dst.close()

        assert keys.expire(START + 10 * DAY, keep=KEEP) == 1
        with pytest.raises(KeyForgotten):
            keys.open(old, b"aad")
        assert keys.open(recent, b"aad") == b"128/84"
        assert keys.open(site, b"aad") == b"rules state"  # older than the horizon, never expires
        assert keys.kid_of(OLD) is None and old[1:17] in keys.forgotten_kids()
        assert keys.subjects_count() == 2
        # no byte of the expired key left in the live file or its WAL (secure_delete, WAL truncated)
        assert old_wrapped not in file_bytes(db)
        assert (tmp_path / "keys.db-wal").stat().st_size == 0
        assert keys.expire(START + 10 * DAY, keep=KEEP) == 0

        # the plate seen again: a new key, which seals and opens; what the old one sealed stays erased
        again = keys.seal(OLD, b"passage 2", b"aad")
        assert again[1:17] != old[1:17] and keys.open(again, b"aad") == b"passage 2"
        with pytest.raises(KeyForgotten):
            keys.open(old, b"aad")
    # the limit: a copy of keys.db taken before still holds the key (as for a forgotten one)
    with SubjectKeys(backup, load_master_key(master), clock=wall) as copy:
        assert copy.open(old, b"aad") == b"passage 1"


def test_a_record_stamped_later_than_its_seal_keeps_its_key(tmp_path: Path, master: Path) -> None:
    db, wall = tmp_path / "keys.db", Wall()
    with SubjectKeys(db, load_master_key(master), clock=wall) as keys:
        future = keys.seal(OLD, b"passage", b"aad", ts=START + 200 * DAY)
        stale = keys.seal(RECENT, b"128/84", b"aad", ts=START - 300 * DAY)  # the seal's time counts
        wall.t = START + 150 * DAY
        assert keys.expire(wall.t - 90 * DAY, keep=KEEP) == 1  # START + 60 d
        assert keys.open(future, b"aad") == b"passage"
        with pytest.raises(KeyForgotten):
            keys.open(stale, b"aad")
        wall.t = START + 292 * DAY  # 91 days after the record's own time, and the day's slack
        assert keys.expire(wall.t - 90 * DAY, keep=KEEP) == 1
        with pytest.raises(KeyForgotten):
            keys.open(future, b"aad")


def test_seal_times_are_kept_in_memory_and_written_by_the_expiry_pass_and_close(
    tmp_path: Path, master: Path
) -> None:
    db, wall = tmp_path / "keys.db", Wall()
    key = load_master_key(master)
    with SubjectKeys(db, key, clock=wall) as keys:
        first = keys.seal(RECENT, b"1", b"aad")  # creating the key writes it, with its time
        on_disk = file_bytes(db)
        wall.t = START + DAY / 2
        for i in range(50):
            keys.seal(RECENT, str(i).encode(), b"aad")
        assert file_bytes(db) == on_disk  # within a day of the time in the file a seal writes nothing
        assert stored(db, "SELECT last_seal FROM subject_keys") == [(START,)]
        wall.t = START + 100 * DAY
        keys.seal(RECENT, b"after 100 days", b"aad")  # the file's time is older than a day: written
        assert stored(db, "SELECT last_seal FROM subject_keys") == [(START + 100 * DAY,)]
        on_disk = file_bytes(db)
        wall.t = START + 100.5 * DAY
        for i in range(50):
            keys.seal(RECENT, str(i).encode(), b"aad")
        assert file_bytes(db) == on_disk
        # the pass writes the seal times first: the key sealed since START is kept
        assert keys.expire(START + 10 * DAY, keep=KEEP) == 0
        assert stored(db, "SELECT last_seal FROM subject_keys") == [(START + 100.5 * DAY,)]
        wall.t = START + 120 * DAY
        keys.seal(RECENT, b"2", b"aad")
    assert stored(db, "SELECT last_seal FROM subject_keys") == [(START + 120 * DAY,)]  # at close
    with SubjectKeys(db, key, clock=wall) as keys:
        assert keys.expire(START + 110 * DAY, keep=KEEP) == 0
        assert keys.open(first, b"aad") == b"1"
        assert keys.expire(START + 122 * DAY, keep=KEEP) == 1  # a day after 121: the slack


def test_after_a_crash_a_key_is_kept_until_the_records_of_its_last_seals_expire(
    tmp_path: Path, master: Path
) -> None:
    """Seal times within a day of the file's live in memory until the next pass: a crash loses
    them, and expiry keeps a day's slack, so the key still opens its last records."""
    db, wall, key = tmp_path / "keys.db", Wall(), load_master_key(master)
    keys = SubjectKeys(db, key, clock=wall)
    keys.seal(OLD, b"passage 1", b"aad")
    wall.t = START + 100 * DAY
    keys.seal(OLD, b"passage 2", b"aad")  # written through: the file's time was 100 days old
    wall.t = START + 100.9 * DAY
    last = keys.seal(OLD, b"passage 3", b"aad")  # in memory only
    keys._conn.close()  # the process dies: no pass, no close
    with SubjectKeys(db, key, clock=wall) as again:
        # a pass whose horizon reaches to just before the last seal must keep the key
        assert again.expire(START + 100.89 * DAY, keep=KEEP) == 0
        assert again.open(last, b"aad") == b"passage 3"
        assert again.expire(START + 102 * DAY, keep=KEEP) == 1


def test_a_seal_racing_the_expiry_never_uses_a_key_that_is_then_deleted(tmp_path: Path, master: Path) -> None:
    db, wall = tmp_path / "keys.db", Wall(START - 100 * DAY)
    with SubjectKeys(db, load_master_key(master), clock=wall) as keys:
        keys.seal(RECENT, b"created long ago", b"aad")
        wall.t = START  # from now each seal is at START: an expiry of what is older must keep the key
        stop, start = threading.Event(), threading.Barrier(2, timeout=10)
        passes = [0]

        def expiring() -> None:
            start.wait()
            while not stop.is_set():
                keys.expire(START, keep=KEEP)  # deletes whatever sealed nothing since START
                passes[0] += 1

        worker = threading.Thread(target=expiring)
        worker.start()
        try:
            start.wait()
            sealed: list[bytes] = []
            deadline = time.monotonic() + 10
            while passes[0] < 20 and time.monotonic() < deadline:  # seals all through 20 passes
                sealed.append(keys.seal(RECENT, str(len(sealed)).encode(), b"aad"))
        finally:
            stop.set()
            worker.join()
        assert passes[0] >= 20
        assert [keys.open(e, b"aad") for e in sealed] == [str(i).encode() for i in range(len(sealed))]


def test_an_expiry_that_starts_while_a_seal_takes_its_key_waits_for_the_seal(
    tmp_path: Path, master: Path
) -> None:
    """The seal records its time under the same lock as it takes its key: an expiry starting in
    between cannot delete the key the seal is about to use."""
    db, key = tmp_path / "keys.db", load_master_key(master)
    with SubjectKeys(db, key, clock=Wall(START - 100 * DAY)) as keys:
        keys.seal(RECENT, b"created long ago", b"aad")
    done = threading.Event()
    expired: list[int] = []
    armed = [True]

    def expiring() -> None:
        expired.append(keys.expire(START, keep=KEEP))
        done.set()

    def clock() -> float:
        if armed[0]:  # the seal asks the time: an expiry starts now, from another thread
            armed[0] = False
            threading.Thread(target=expiring).start()
            done.wait(0.3)  # it must not get through while the seal is under way
        return START

    with SubjectKeys(db, key, clock=clock) as keys:
        envelope = keys.seal(RECENT, b"sealed at START", b"aad")
        assert done.wait(10)
        assert expired == [0]
        assert keys.open(envelope, b"aad") == b"sealed at START"


def test_keys_of_a_keys_db_from_before_the_upgrade_get_the_upgrade_time(tmp_path: Path, master: Path) -> None:
    db, key = tmp_path / "keys.db", load_master_key(master)
    with SubjectKeys(db, key, clock=Wall(START - 500 * DAY)) as keys:
        envelope = keys.seal(OLD, b"passage", b"aad")
    # the previous version's table: no seal times
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE old_keys (subject BLOB PRIMARY KEY, kid BLOB NOT NULL UNIQUE, wrapped BLOB NOT NULL);
        INSERT INTO old_keys SELECT subject, kid, wrapped FROM subject_keys;
        DROP TABLE subject_keys;
        ALTER TABLE old_keys RENAME TO subject_keys;
        """
    )
    conn.close()
    upgrade = Wall(START)
    with SubjectKeys(db, key, clock=upgrade) as keys:
        assert stored(db, "SELECT last_seal FROM subject_keys") == [(START,)]
        assert keys.expire(START - 1, keep=KEEP) == 0  # kept a full horizon after the upgrade
        assert keys.open(envelope, b"aad") == b"passage"
        # a row an earlier version inserts into the upgraded file (no seal time) gets the pass's time
        stored_conn = sqlite3.connect(db)
        stored_conn.execute("UPDATE subject_keys SET last_seal = NULL")
        stored_conn.commit()
        stored_conn.close()
        upgrade.t = START + 5 * DAY
        assert keys.expire(START + 1 * DAY, keep=KEEP) == 0
        assert stored(db, "SELECT last_seal FROM subject_keys") == [(START + 5 * DAY,)]
        assert keys.expire(START + 7 * DAY, keep=KEEP) == 1  # a day after 6: the slack
        with pytest.raises(KeyForgotten):
            keys.open(envelope, b"aad")


def test_the_horizon_is_the_longer_private_retention_and_none_when_either_is_kept() -> None:
    assert key_horizon({0: 7 * DAY, 1: 90 * DAY, 2: 30 * DAY}) == 90 * DAY
    assert key_horizon({0: None, 1: 30 * DAY, 2: 180 * DAY}) == 180 * DAY
    assert key_horizon({0: 7 * DAY, 1: None, 2: 30 * DAY}) is None
    assert key_horizon({0: 7 * DAY, 1: 90 * DAY, 2: None}) is None


def passage(plate: str, ts: float) -> Event:
    return Event("vehicle_passage", "gate", "info", {"plate": plate, "privacy": "personal"}, ts)


def sealed_passages(path: Path) -> list[tuple[float, str, bytes]]:
    """(ts, source, sealed payload) of the vehicle passages in a copy of the journal, read raw."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT ts, point, payload FROM journal WHERE kind = 'vehicle_passage'"
        ).fetchall()
    finally:
        conn.close()


async def test_a_plates_key_goes_after_its_records_expired_never_while_the_clock_guard_holds(
    tmp_path: Path, master: Path
) -> None:
    clock = FakeClock()
    trust, synced = lab_trust(clock)
    j = journal(tmp_path, clock, {"sensitive": "30d", "personal": "90d"}, clock_trust=trust)
    sealer = Sealer(SubjectKeys(keys_path(j.path), load_master_key(master), clock=clock.now))
    j.attach_sealer(sealer)  # the journal closes it
    expiry = KeyExpiry(sealer.keys, "test-site")
    j.expirer_interval = 0.0
    j.add_expirer(expiry)
    keys = sealer.keys
    try:
        j.append([passage(OLD, START)])
        await j.flush()
        old_kid = keys.kid_of(OLD)
        assert old_kid is not None
        clock.wall += 60 * DAY  # 60 days pass, the clocks in step
        clock.mono += 60 * DAY
        j.append([passage(RECENT, clock.wall)])
        await j.flush()
        backup = tmp_path / "backup.db"
        src, dst = sqlite3.connect(j.path), sqlite3.connect(backup)
        src.backup(dst)  # a copy of the journal taken while both passages were there
        src.close()
        dst.close()
        copied = sealed_passages(backup)
        assert [orjson.loads(sealer.open_text(p, "payload", ts, s))["plate"] for ts, s, p in copied] == [
            OLD,
            RECENT,
        ]
        await passes(j, clock)
        assert expiry.expired == 0

        # the wall clock jumps 32 days ahead of the seconds that passed: nothing expires by it
        clock.wall += 32 * DAY
        clock.mono += 10
        await until(lambda: j.retention_paused is not None, what="the pause")
        assert [e.kind for e in trust.check()] == ["clock_untrusted"] and not trust.trusted
        await passes(j, clock, 5)
        assert keys.kid_of(OLD) == old_kid and expiry.expired == 0
        assert len(sealed_passages(Path(j.path))) == 2

        synced[0] = True  # NTP answers: the jumped clock is right, OLD's passage is 92 days old
        # (its key goes a day after the 90 days' horizon: the slack for seal times lost in a crash)
        trust.check()
        await until(lambda: expiry.expired == 1, what="the old plate's key expiring")
        await until(lambda: len(sealed_passages(Path(j.path))) == 1, what="the old passage expiring")
        assert keys.kid_of(OLD) is None and keys.kid_of(RECENT) is not None
        await j.flush()
        events = sql(j, "SELECT point, severity, payload FROM journal WHERE kind = 'data_keys_expired'")
        assert [(s, sev, orjson.loads(p)) for s, sev, p in events] == [
            ("test-site", "info", {"count": 1, "horizon_s": 90 * DAY})
        ]
        assert OLD not in str(events) and RECENT not in str(events)
        # the copy taken before: the expired passage no longer opens, the recent one does
        (old_ts, old_src, old_env), (ts, src_, env) = copied
        with pytest.raises(KeyForgotten):
            sealer.open_text(old_env, "payload", old_ts, old_src)
        assert orjson.loads(sealer.open_text(env, "payload", ts, src_))["plate"] == RECENT
    finally:
        await j.close()


SITE = """
site: {id: expiring-site}
privacy:
  master_key_file: MASTER
  retention: {sensitive: 30d, personal: 90d}
devices:
  - id: meter
    driver: sim
    points:
      - {name: kw, signal: constant, value: 1, interval: 1h}
"""


async def test_a_running_gateway_expires_keys_and_journals_it(tmp_path: Path, master: Path) -> None:
    # keys.db as a gateway left it: a resident last sealed 200 days ago, another today
    db = keys_path(tmp_path / "edge.db")
    with SubjectKeys(db, load_master_key(master), clock=lambda: time.time() - 200 * DAY) as keys:
        old = keys.seal(OLD, b"passage", b"aad")
    with SubjectKeys(db, load_master_key(master)) as keys:
        recent = keys.seal(RECENT, b"128/84", b"aad")
    async with running_site(tmp_path, SITE.replace("MASTER", str(master)), web=False) as rt:
        privacy = rt.components["privacy"]
        await until(lambda: privacy.status()["keys_expired"] == 1, what="the old key expiring")

        async def journaled() -> bool:
            await rt.journal.flush()
            return bool(sql(rt.journal, "SELECT 1 FROM journal WHERE kind = 'data_keys_expired'"))

        await until_async(journaled, what="the data_keys_expired event")
        (payload,) = sql(rt.journal, "SELECT payload FROM journal WHERE kind = 'data_keys_expired'")[0]
        assert orjson.loads(payload) == {"count": 1, "horizon_s": 90 * DAY}
        keys = privacy.sealer.keys
        with pytest.raises(KeyForgotten):
            keys.open(old, b"aad")
        assert keys.open(recent, b"aad") == b"128/84"
