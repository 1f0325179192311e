"""A record that can never be written does not stop the site's journal: the batch that holds it
fails twice alike with a data error, is committed in halves, and the record that fails alone is
refused, counted in the persisted `dropped_unwritable` and reported in a `buffer_drop` event of
reason `unwritable`; everything else commits in order with consecutive seqs. Errors that are not
the data's (a full disk, a locked file, a key store that no longer opens) keep the retry. Also:
a changed `expirer_interval` takes effect at the next retention pass, an integer journaled as a
float is logged by its point, never its value, and the checkpoint the journal and the trend
index share."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.commands import format_health
from edge.config import StorageConfig
from edge.model import Event, Reading, Record
from edge.store.health import buffer_health
from edge.store.journal import DROPPED_UNWRITABLE, Journal, unwritable
from edge.store.rows import checkpoint, connect
from tests.store.helpers import open_journal
from tests.support.tools import require_root
from tests.support.waiting import until


def nested(depth: int) -> dict[str, Any]:
    """A payload nested `depth` dicts deep (orjson writes at most 254 levels)."""
    payload: dict[str, Any] = {}
    inner = payload
    for _ in range(depth):
        inner["x"] = {}
        inner = inner["x"]
    return payload


def clean(n: int, t: float, point: str = "meter.kwh") -> list[Reading]:
    return [Reading(t + i, point, float(i)) for i in range(n)]


def journal_rows(path: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, point, value, kind, payload FROM journal ORDER BY seq").fetchall()
    finally:
        conn.close()


def persisted(path: str, name: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else 0


def drops(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [orjson.loads(payload) for _, _, _, kind, payload in rows if kind == "buffer_drop"]


async def settled(j: Journal, refused: int) -> None:
    """Wait until `refused` records were set apart and the events saying so are committed."""
    await until(lambda: j.counters[DROPPED_UNWRITABLE] >= refused, timeout=20, what="the refusal")
    await j.flush()
    await j.flush()


POISONS: dict[str, Record] = {
    "payload nested beyond orjson": Event("note", "kiosk", payload=nested(300)),
    "payload nested beyond Python": Event("note", "kiosk", payload=nested(3000)),
    "reading whose value is a list": Reading(0.0, "meter.odd", [1, 2]),  # type: ignore[arg-type]
    "reading whose value is a dict": Reading(0.0, "meter.odd", {"a": 1}),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", list(POISONS))
async def test_a_poison_record_is_refused_and_the_rest_commits_in_order(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="edge.store")
    t = time.time()
    poison = POISONS[case]
    if isinstance(poison, Reading):
        poison = poison._replace(ts=t + 4)
    else:
        poison.ts = t + 4
    before, after = clean(4, t), clean(4, t + 5)
    j = open_journal(tmp_path)
    try:
        j.append([*before, poison, *after])
        await settled(j, 1)
        assert not j.failing
        assert j.committed_seq == 9  # 8 readings, then the event that reports the refusal
        health = buffer_health(j, StorageConfig(path=j.path))
        assert health["dropped_unwritable"] == 1
        assert "dropped unwritable 1" in format_health(health)  # as `edge buffer stats` prints it
        # a second record that fails alike: counted and reported, not logged again
        again: Record = (
            poison._replace(ts=t + 10)
            if isinstance(poison, Reading)
            else Event("note", "kiosk", payload=poison.payload, ts=t + 10)
        )
        j.append([again, *clean(2, t + 11)])
        await settled(j, 2)
    finally:
        await j.close()

    rows = journal_rows(j.path)
    assert [seq for seq, *_ in rows] == list(range(1, len(rows) + 1))  # consecutive, no gap
    readings = [(point, value) for _, point, value, kind, _ in rows if kind is None]
    assert readings == [(r.point, r.value) for r in [*before, *after, *clean(2, t + 11)]]
    assert [seq for seq, _, _, kind, _ in rows if kind == "buffer_drop"] == [9, 12]
    first, second = drops(rows)
    assert first["reason"] == "unwritable" and first["dropped"] == 1
    assert first["ts"] == t + 4
    assert first["totals"][DROPPED_UNWRITABLE] == 1 and second["totals"][DROPPED_UNWRITABLE] == 2
    if isinstance(poison, Reading):
        assert first["point"] == "meter.odd"
        assert "not supported" in first["error"]
    else:
        assert (first["kind"], first["source"]) == ("note", "kiosk")
        assert first["error"] == "TypeError: Recursion limit reached"
    assert len(first["error"]) <= 200
    said = [r for r in caplog.records if "cannot be written was dropped" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert persisted(j.path, DROPPED_UNWRITABLE) == 2
    reader = Journal.open_readonly(j.path)
    try:
        assert reader.counters[DROPPED_UNWRITABLE] == 2
    finally:
        reader.close_sync()


async def test_several_poison_records_in_one_batch_leave_no_gap(tmp_path: Path) -> None:
    t = time.time()
    good = clean(40, t)
    batch: list[Record] = list(good)
    # each a record of its own kind of trouble, spread over the batch
    batch.insert(35, Reading(t, "meter.odd", {"a": 1}))  # type: ignore[arg-type]
    batch.insert(17, Event("note", "kiosk", payload=nested(300), ts=t))
    batch.insert(3, Reading(t, "meter.odd", [1]))  # type: ignore[arg-type]
    batch.insert(0, Reading(t, "meter.odd", [2]))  # type: ignore[arg-type]
    j = open_journal(tmp_path)
    try:
        j.append(batch)
        await settled(j, 4)
        assert j.counters[DROPPED_UNWRITABLE] == 4
    finally:
        await j.close()
    rows = journal_rows(j.path)
    assert [seq for seq, *_ in rows] == list(range(1, 45))
    assert [(p, v) for _, p, v, kind, _ in rows if kind is None] == [(r.point, r.value) for r in good]
    assert [seq for seq, _, _, kind, _ in rows if kind is not None] == [41, 42, 43, 44]
    assert sorted(str(d.get("point", d.get("kind"))) for d in drops(rows)) == [
        "meter.odd",
        "meter.odd",
        "meter.odd",
        "note",
    ]


class Classes:
    """The hub's classes for a site with one sensitive point."""

    def __init__(self) -> None:
        self.private_ranks: Mapping[str, int] = {"kiosk.bp": 2}
        self.points: Mapping[str, Any] = {}


class KeyStoreLocked(ValueError):
    """Stands for the key store's own errors (WrongMasterKey): a state, not a record's fault."""


class Sealer:
    """Seals by prefixing; refuses the value `refuse` (a ValueError, as for a value it cannot take)
    and, while `locked` is set, everything (a ValueError subclass, as a key store rotated away)."""

    def __init__(self, refuse: Any = None) -> None:
        self.sealed = 0
        self.refuse = refuse
        self.locked = threading.Event()

    def _check(self, value: Any) -> None:
        if self.locked.is_set():
            raise KeyStoreLocked("the key store does not open with this master key")
        if value == self.refuse:
            raise ValueError(f"cannot seal {value!r}")

    def seal_value(self, value: Any, ts: float, source: str) -> bytes:
        self._check(value)
        self.sealed += 1
        return b"sealed:" + orjson.dumps(value)

    def seal_payload(self, payload: dict[str, Any], text: str, ts: float, source: str) -> bytes:
        self._check(payload)
        self.sealed += 1
        return b"sealed:" + text.encode()

    def open_text(self, envelope: bytes, column: str, ts: float, source: str) -> str:
        return envelope.removeprefix(b"sealed:").decode()

    def close(self) -> None:
        pass


async def test_a_record_the_sealer_refuses_is_set_apart_and_its_error_not_quoted(tmp_path: Path) -> None:
    t = time.time()
    sealer = Sealer(refuse=131.0)
    j = open_journal(tmp_path, classes=Classes(), sealer=sealer)  # type: ignore[arg-type]
    try:
        j.append([Reading(t, "kiosk.bp", 120.0), Reading(t + 1, "kiosk.bp", 131.0), *clean(3, t + 2)])
        await settled(j, 1)
    finally:
        await j.close()
    rows = journal_rows(j.path)
    assert [seq for seq, *_ in rows] == [1, 2, 3, 4, 5]
    assert rows[0][1:3] == ("kiosk.bp", b"sealed:120.0")
    assert [v for _, p, v, kind, _ in rows if p == "meter.kwh"] == [0.0, 1.0, 2.0]
    (drop,) = drops(rows)
    assert drop["point"] == "kiosk.bp" and drop["ts"] == t + 1
    assert drop["error"] == "ValueError"  # a sensitive record: its error's text may quote the value
    assert "131" not in rows[-1][4]


async def test_a_sealer_that_cannot_seal_anything_keeps_the_retry(tmp_path: Path) -> None:
    """A key store's error (a ValueError subclass) says nothing about the record: never split,
    nothing refused; the records commit once sealing works again."""
    t = time.time()
    sealer = Sealer()
    sealer.locked.set()
    j = open_journal(tmp_path, classes=Classes(), sealer=sealer)  # type: ignore[arg-type]
    try:
        j.append([Reading(t, "kiosk.bp", 120.0), *clean(3, t + 1)])
        await until(lambda: j.write_errors >= 4, timeout=20, what="retried commits")
        assert j.failing and j.committed_seq == 0
        assert j.counters[DROPPED_UNWRITABLE] == 0
        sealer.locked.clear()
        await until(lambda: j.committed_seq == 4, timeout=20, what="the records committed")
        assert not j.failing
    finally:
        await j.close()
    assert [p for _, p, *_ in journal_rows(j.path)] == ["kiosk.bp", "meter.kwh", "meter.kwh", "meter.kwh"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    require_root("mounts a 2 MiB tmpfs to fill it up")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.root
async def test_a_full_disk_is_retried_not_split(small_disk: Path) -> None:
    """SQLite's real SQLITE_FULL (no reserve): the batch waits whole, nothing is refused as
    unwritable, and it commits in order once space returns."""
    t = time.time()
    j = open_journal(small_disk, disk_reserve=None, when_full="drop_oldest")
    filler = small_disk / "filler"
    try:
        j.append(clean(10, t))
        await j.flush()
        with filler.open("wb") as f:  # another program takes every free byte
            chunk = b"\0" * 65536
            with pytest.raises(OSError):
                while True:
                    f.write(chunk)
                    f.flush()
        j.append(clean(3000, t + 10, point="meter.big"))
        await until(lambda: j.counters["disk_full"] >= 3, timeout=30, what="commits failing on a full disk")
        assert j.failing
        assert j.counters[DROPPED_UNWRITABLE] == 0
        filler.unlink()
        await until(lambda: j.committed_seq >= 3010, timeout=30, what="the backlog committed")
    finally:
        await j.close()
    rows = journal_rows(j.path)
    assert [seq for seq, *_ in rows] == list(range(1, 3011))
    assert not drops(rows)


def test_errors_of_the_file_and_of_the_journal_are_not_the_records(tmp_path: Path) -> None:
    """Real SQLite errors: a locked file, the journal's own seq check, a closed connection."""
    path = str(tmp_path / "t.db")
    a = sqlite3.connect(path, isolation_level=None, timeout=0)
    b = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        a.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, v)")
        a.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError) as locked:
            b.execute("BEGIN IMMEDIATE")
        assert not unwritable(locked.value)
        a.execute("INSERT INTO journal VALUES (1, 1)")
        with pytest.raises(sqlite3.IntegrityError) as taken:
            a.execute("INSERT INTO journal VALUES (1, 2)")
        assert not unwritable(taken.value)
        with pytest.raises(sqlite3.ProgrammingError) as bad_value:
            a.execute("INSERT INTO journal VALUES (2, ?)", ([1],))
        assert unwritable(bad_value.value)
        a.execute("ROLLBACK")
    finally:
        a.close()
        b.close()
    with pytest.raises(sqlite3.ProgrammingError) as closed:
        a.execute("SELECT 1")
    assert not unwritable(closed.value)
    assert not unwritable(sqlite3.IntegrityError("journal seq numbering diverged; transaction rolled back"))
    assert not unwritable(KeyStoreLocked("the key store does not open"))


async def test_a_changed_expirer_interval_takes_effect_at_once(tmp_path: Path) -> None:
    runs: list[float] = []
    ran = threading.Event()

    def expirer(now: float, retention_s: Mapping[int, float | None]) -> list[Event]:
        runs.append(now)
        ran.set()
        return []

    j = open_journal(tmp_path, retention_interval=0.02)
    try:
        j.add_expirer(expirer)
        assert await asyncio.to_thread(ran.wait, 10), "the first expirer run"
        j.expirer_interval = 0.0
        await until(lambda: len(runs) >= 3, timeout=10, what="expirer runs at the new interval")
    finally:
        await j.close()


async def test_a_point_unwritable_at_every_poll_is_split_at_once_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The error the last split found, back in the next batch: split at its first failure, not
    after a failed commit, the retry's wait and another 'journal commit failed' line per poll."""
    caplog.set_level(logging.ERROR, logger="edge.store")
    t = time.time()
    polls = 6
    j = open_journal(tmp_path)
    try:
        for k in range(polls):
            # the bad value sits elsewhere in each batch ("Error binding parameter N" differs)
            poison = Reading(t + 100 * k + 50, "meter.odd", [1, 2])  # type: ignore[arg-type]
            j.append([*clean(k, t + 100 * k), poison, *clean(20 - k, t + 100 * k + 60)])
            await settled(j, k + 1)
        assert not j.failing
        # the first poll fails twice (the commit, its retry: then split), each later one once
        assert j.write_errors == polls + 1
    finally:
        await j.close()
    failed = [r for r in caplog.records if "journal commit failed" in r.getMessage()]
    assert len(failed) == 1, [r.getMessage() for r in failed]
    said = [r for r in caplog.records if "cannot be written was dropped" in r.getMessage()]
    assert len(said) == 1
    rows = journal_rows(j.path)
    assert [seq for seq, *_ in rows] == list(range(1, len(rows) + 1))
    assert len([r for r in rows if r[3] is None]) == 20 * polls
    assert len(drops(rows)) == polls


async def test_an_integer_journaled_as_a_float_is_logged_by_its_point_not_its_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sensitive reading's value is sealed at rest: the log line that says it was journaled
    as a float names the point, never the value."""
    caplog.set_level(logging.WARNING, logger="edge.store")
    point = f"kiosk.big_{time.monotonic_ns()}"  # said once per point: one no other test used
    classes = Classes()
    classes.private_ranks = {point: 2}
    value = 2**70 + 12345
    j = open_journal(tmp_path, classes=classes, sealer=Sealer())  # type: ignore[arg-type]
    try:
        j.append([Reading(time.time(), point, value)])
        await j.flush()
        assert j.committed_seq == 1 and j.counters["ints_as_floats"] == 1
    finally:
        await j.close()
    said = [r.getMessage() for r in caplog.records if "nearest float" in r.getMessage()]
    assert len(said) == 1 and point in said[0], said
    assert str(value) not in caplog.text and str(float(value)) not in caplog.text


@pytest.mark.parametrize("schema", ["main", "trend"])
def test_a_checkpoint_waits_briefly_for_a_reader_then_truncates_the_wal(tmp_path: Path, schema: str) -> None:
    """The one checkpoint of the journal's file and of the attached trend index: a reader's
    snapshot keeps it from finishing (False, the connection's own busy timeout restored), and
    once the reader is done the WAL is truncated."""
    main, trend = tmp_path / "edge.db", tmp_path / "trend.db"
    conn = connect(str(main))
    reader = sqlite3.connect(str(trend if schema == "trend" else main), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"ATTACH DATABASE '{trend}' AS trend")
        conn.execute("PRAGMA trend.journal_mode=WAL")
        conn.execute(f"CREATE TABLE {schema}.t (x)")
        conn.executemany(f"INSERT INTO {schema}.t VALUES (?)", [(i,) for i in range(100)])
        wal = Path(f"{trend if schema == 'trend' else main}-wal")
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (100,)
        assert checkpoint(conn, schema) is False
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (30000,)
        reader.execute("COMMIT")
        assert checkpoint(conn, schema) is True
        assert wal.stat().st_size == 0
    finally:
        reader.close()
        conn.close()
