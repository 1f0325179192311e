"""The journal on real SQLite files: group commit, retention by cursors, the byte cap with both
full policies, migration from v1, readers during writes, and the health figures."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import orjson
import pytest

from edge.config import StorageConfig
from edge.model import Event, Reading
from edge.store import rows as rows_module
from edge.store import schema
from edge.store.health import buffer_health
from edge.store.journal import WRITER_CACHE_KIB, Journal, JournalClosed
from edge.store.reader import READER_CACHE_KIB
from edge.store.rows import insert_many, insert_readings, insert_records
from tests.store.helpers import drop_events, integrity, open_journal, readings, sql
from tests.support.waiting import until


async def test_group_commit_many_appends_few_transactions(tmp_path: Path) -> None:
    j = open_journal(tmp_path, flush_interval=0.05, flush_max_items=5000)
    try:
        for i in range(200):  # 200 driver batches of 100 readings
            j.append(readings(100, device=f"dev{i}"))
        await j.flush()
        assert j.committed_seq == 20_000
        assert j.flushes <= 10, f"{j.flushes} transactions for 200 appends: group commit is not grouping"
        assert [r["seq"] for r in j.read(0, 3)] == [1, 2, 3]
        assert j.counters["rows"] == 20_000
    finally:
        await j.close()


async def test_the_writers_cache_stays_small_and_a_step_beyond_it_commits_whole(tmp_path: Path) -> None:
    # the writer writes each page once: SQLite's default 2 MB cache filled with them and stayed,
    # the gateway's RSS rising a quarter MB a minute; a step of 40,000 records (some 2 MB of
    # pages) spills past the cap into the WAL and still commits as one transaction
    j = open_journal(tmp_path, flush_max_items=40_000)
    try:
        assert j._w is not None
        assert j._w.execute("PRAGMA cache_size").fetchall() == [(-WRITER_CACHE_KIB,)]
        assert WRITER_CACHE_KIB <= 512
        # and the journal's own read connection (the UI's and CLI's reads) is capped alike
        assert j._read is not None
        assert j._read.execute("PRAGMA cache_size").fetchall() == [(-READER_CACHE_KIB,)]
        steps = j.flushes
        j.append(readings(40_000))
        await j.flush()
        assert j.committed_seq == 40_000 and j.flushes == steps + 1
        assert sql(j, "SELECT count(*), min(seq), max(seq) FROM journal") == [(40_000, 1, 40_000)]
    finally:
        await j.close()
    assert integrity(str(tmp_path / "edge.db")) == "ok"


async def test_values_round_trip_and_seq_never_reused(tmp_path: Path) -> None:
    j = open_journal(tmp_path, keep_history=0.0, retention_interval=0.02)
    try:
        j.append([Reading(1.0, "gate.open", True, 0), Reading(2.0, "gate.count", 7, 1)])
        j.append([Event("alert", "rule-1", "warning", {"x": 1}, 3.0)])
        await j.flush()
        recs = j.read(0, 10)
        assert recs[0]["value"] is True and recs[1]["value"] == 7 and recs[1]["quality"] == "bad"
        assert recs[2]["type"] == "event" and recs[2]["payload"] == {"x": 1}
        # with no cursors only age matters: everything is older than keep_history=0 and goes
        await until(lambda: j.counters["retention_deleted"] == 3, what="retention of every row")
        j.append([Reading(4.0, "gate.open", False, 0)])
        assert await j.flush() == 4  # the table was empty, yet seq 1..3 are never handed out again
    finally:
        await j.close()


async def test_retention_deletes_only_what_every_cursor_passed(tmp_path: Path) -> None:
    now = time.time()
    j = open_journal(tmp_path, keep_history=7 * 86400, retention_interval=0.02, retention_chunk=100)
    try:
        j.append(readings(1000, start_ts=now - 10 * 86400))  # old enough to expire
        j.append(readings(1000, start_ts=now))  # recent: kept for keep_history
        await j.flush()
        await j.register_cursor("central", "sink", 0)
        await j.register_cursor("city-platform", "consumer", 0)
        await j.set_cursor("central", 800, "sink")
        await j.set_cursor("city-platform", 500, "consumer")
        await until(lambda: j.counters["retention_deleted"] >= 500, what="expiry up to the slowest cursor")
        await asyncio.sleep(0)  # let another retention step run: it must not go past seq 500
        await j.flush()
        assert sql(j, "SELECT min(seq) FROM journal")[0][0] == 501
        assert j.counters["retention_deleted"] == 500
        await j.set_cursor("city-platform", 2000, "consumer")
        await until(lambda: j.counters["retention_deleted"] >= 800, what="expiry up to the next cursor")
        await j.set_cursor("central", 2000, "sink")
        await until(lambda: j.counters["retention_deleted"] >= 1000, what="expiry of all old rows")
        await j.flush()
        assert sql(j, "SELECT min(seq), count(*) FROM journal")[0] == (1001, 1000)  # recent rows stay
        assert j.counters["rows"] == 1000
    finally:
        await j.close()


async def _overfill(j: Journal, sink_keeps_up: bool = False) -> None:
    """40 driver batches of 1000 readings, far past a 400 kB cap, with sink "central" registered
    from seq 0 (offline unless `sink_keeps_up`: then its cursor follows every commit)."""
    await j.register_cursor("central", "sink", 0)
    for i in range(40):
        j.append(readings(1000, device=f"d{i}"))
        await asyncio.sleep(0)
        if sink_keeps_up:
            await j.set_cursor("central", j.committed_seq, "sink")
    await j.flush()


async def test_byte_cap_drop_oldest_counts_and_reports_one_event_per_burst(tmp_path: Path) -> None:
    j = open_journal(tmp_path, max_bytes=400_000, when_full="drop_oldest", flush_max_items=2000)
    try:
        await _overfill(j)  # the sink is offline: nothing is delivered
        dropped = j.counters["dropped_oldest"]
        assert dropped > 0
        assert j.counters["rows"] + dropped == 40_000  # every record is either stored or counted
        assert sql(j, "SELECT count(*) FROM journal")[0][0] == j.counters["rows"]
        health = buffer_health(j, StorageConfig(path=j.path))
        assert health["bytes"] <= 400_000 * 1.1 and health["dropped_oldest"] == dropped
        events = await until(lambda: drop_events(j.path), what="the buffer_drop event")
        await j.flush()
        assert len(drop_events(j.path)) == 1, "one event per burst, not per flush"
        payload = orjson.loads(events[0][1])
        assert payload["dropped"] == dropped and payload["policy"] == "drop_oldest"
        assert payload["reason"] == "max_bytes" and payload["first_seq"] == 1
        first_kept = sql(j, "SELECT min(seq) FROM journal")[0][0]
        assert payload["last_seq"] == first_kept - 1
        # a second burst is a second event (the first one may itself be dropped by now: it is data)
        for i in range(10):
            j.append(readings(1000, device=f"e{i}"))
        second = await until(
            lambda: [e for e in drop_events(j.path) if e[0] > events[0][0]], what="the second burst's event"
        )
        assert orjson.loads(second[0][1])["totals"]["dropped_oldest"] == j.counters["dropped_oldest"]
    finally:
        await j.close()
    reopened = Journal(j.path).open()  # the counters are persisted in the journal file
    try:
        assert reopened.counters["dropped_oldest"] == orjson.loads(second[0][1])["totals"]["dropped_oldest"]
    finally:
        await reopened.close()


async def test_byte_cap_trims_delivered_history_before_dropping(tmp_path: Path) -> None:
    j = open_journal(tmp_path, max_bytes=400_000, when_full="drop_newest", flush_max_items=2000)
    try:
        await _overfill(j, sink_keeps_up=True)
        assert j.counters["dropped_newest"] == 0 and j.counters["dropped_oldest"] == 0
        assert j.counters["history_trimmed"] > 0
        assert j.committed_seq == 40_000
    finally:
        await j.close()


async def test_byte_cap_drop_newest_keeps_the_oldest_and_counts_refusals(tmp_path: Path) -> None:
    j = open_journal(tmp_path, max_bytes=400_000, when_full="drop_newest", flush_max_items=2000)
    try:
        await _overfill(j)
        refused = j.counters["dropped_newest"]
        assert refused > 0
        kept = sql(j, "SELECT min(seq), max(seq), count(*) FROM journal")[0]
        assert kept[0] == 1 and kept[1] == kept[2] == j.committed_seq  # oldest kept, no gaps
        assert j.committed_seq + refused == 40_000
        events = await until(lambda: drop_events(j.path), what="the buffer_drop event")
        payload = orjson.loads(events[0][1])
        assert len(events) == 1 and payload["dropped"] == refused and payload["policy"] == "drop_newest"
        assert payload["first_ts"] is not None and payload["first_seq"] is None  # refused rows had no seq
    finally:
        await j.close()


def build_v1(path: Path) -> None:
    """A journal file exactly as version 1 of the program wrote it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(schema.V1)
    conn.execute("INSERT INTO meta VALUES ('schema_version', 1), ('last_seq', 3)")
    conn.executemany(
        "INSERT INTO journal(seq, ts, point, value, quality) VALUES (?,?,?,?,?)",
        [(1, 1.0, "meter.kw", 2.5, 0), (2, 2.0, "gate.open", 1, 4)],
    )
    conn.execute(
        "INSERT INTO journal(seq, ts, point, kind, severity, payload) VALUES (3, 3.0, 'kiosk', 'bp', 'info', '{\"sys\":120}')"
    )
    conn.execute("INSERT INTO cursors VALUES ('central', 'sink', 2, 3.0)")
    conn.close()


async def test_migration_from_v1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    build_v1(path)
    j = Journal(str(path)).open()
    try:
        assert sql(j, "SELECT value FROM meta WHERE key='schema_version'")[0][0] == schema.SCHEMA_VERSION == 3
        assert j.counters["rows"] == 3 and j.counters["dropped_oldest"] == 0
        assert [r["seq"] for r in j.read(0, 10)] == [1, 2, 3]
        assert j.read(1, 1)[0]["value"] is True and j.read(2, 1)[0]["payload"] == {"sys": 120}
        assert j.get_cursor("central") == 2
        j.append(readings(2))
        assert await j.flush() == 5
        assert j.counters["rows"] == 5
    finally:
        await j.close()
    assert integrity(str(path)) == "ok"


async def test_schema_newer_than_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    build_v1(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value=99 WHERE key='schema_version'")
    conn.commit()
    conn.close()
    try:
        Journal(str(path)).open()
    except schema.SchemaTooNew as exc:
        assert "99" in str(exc) and "upgrade" in str(exc)
    else:
        raise AssertionError("a journal from a newer program was opened")


async def test_readers_never_block_the_writer(tmp_path: Path) -> None:
    j = open_journal(tmp_path, flush_interval=0.01)
    try:
        j.append(readings(1000))
        await j.flush()
        reader = sqlite3.connect(j.path, isolation_level=None)
        reader.execute("BEGIN")  # a long read transaction (a slow UI query, a pull API page)
        before = reader.execute("SELECT count(*) FROM journal").fetchone()[0]
        stop = threading.Event()
        reads = [0]

        def read_loop() -> None:  # the journal's own read connection, hammered from a thread
            while not stop.is_set():
                j.read(max(0, j.committed_seq - 500), 500)
                reads[0] += 1

        t = threading.Thread(target=read_loop)
        t.start()
        try:
            for i in range(50):
                j.append(readings(200, device=f"d{i}"))
                await j.flush()
        finally:
            stop.set()
            t.join()
        assert j.committed_seq == 11_000 and reads[0] > 0
        assert reader.execute("SELECT count(*) FROM journal").fetchone()[0] == before  # its snapshot
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM journal").fetchone()[0] == 11_000
        reader.close()
    finally:
        await j.close()


async def test_health_reports_rates_backlog_and_time_until_full(tmp_path: Path) -> None:
    j = open_journal(tmp_path, max_bytes=50_000_000)
    try:
        await j.register_cursor("city-platform", "consumer", 0)
        for _ in range(30):
            j.append(readings(500))
            await j.flush()
            await asyncio.sleep(0.05)
        h = buffer_health(j, StorageConfig(path=j.path))
        assert h["rows"] == 15_000 and h["last_seq"] == 15_000 and h["bytes"] > 0
        assert h["ingest_rate"] > 0 and h["time_until_full_s"] and h["time_until_full_s"] > 0
        c = h["cursors"]["city-platform"]
        assert c["backlog"] == 15_000 and c["oldest_unsent_age_s"] is not None
        assert h["write_errors"] == 0 and h["dropped_oldest"] == 0
    finally:
        await j.close()
    ro = Journal.open_readonly(j.path)  # `edge buffer stats` reads without a writer
    try:
        h = buffer_health(ro, StorageConfig(path=j.path))
        assert h["rows"] == 15_000 and h["cursors"]["city-platform"]["backlog"] == 15_000
    finally:
        ro.close_sync()


async def test_flush_returns_once_what_came_before_it_is_in_while_more_keeps_coming(tmp_path: Path) -> None:
    """A transaction takes at most flush_max_items records; flush() (and so a sink's cursor move)
    must not wait for the queue to run dry when records arrive faster than the writer commits."""
    j = open_journal(tmp_path, flush_max_items=1000)
    try:
        j.append(list(readings(5000)))
        flushed = asyncio.ensure_future(j.flush())
        await until(lambda: (j.append(list(readings(20_000))), flushed.done())[1], 10, what="flush()")
        assert flushed.result() >= 5000
        assert j.pending > 0  # the queue never ran dry meanwhile
    finally:
        await j.close()


async def test_every_record_lands_at_its_seq_in_append_order_whatever_the_flush_size(tmp_path: Path) -> None:
    """Readings go in as multi-row statements of up to 1000 rows plus power-of-two remainders:
    no row may be lost, doubled or reordered at a statement boundary, bools keep their flag, and
    a flush that also carries an event, or follows a deletion of every row, numbers the same."""
    j = open_journal(tmp_path, flush_max_items=5000, keep_history=None)
    expected: list[tuple[str, object]] = []
    try:
        for size in (1, 2, 3, 999, 1000, 1001, 1023, 2047, 4999, 5000, 3001):
            batch = [
                Reading(float(len(expected) + i), f"m.p{i % 7}", len(expected) + i, 0) for i in range(size)
            ]
            if size == 3:
                batch[1] = Reading(batch[1].ts, "gate.open", True, 0)
            j.append(batch)
            expected += [(r.point, r.value) for r in batch]
            await j.flush()
        j.append([Reading(-1.0, "m.p0", 0.5, 2), Event("alert", "rule-1", "warning", {"n": 1}, -1.0)])
        expected += [("m.p0", 0.5), ("rule-1", {"n": 1})]
        await j.flush()
        rows = j.read(0, len(expected) + 10)
        assert [r["seq"] for r in rows] == list(range(1, len(expected) + 1))
        got = [
            (r["point"], r["value"]) if r["type"] == "reading" else (r["source"], r["payload"]) for r in rows
        ]
        assert got == expected
        assert [type(v) for _, v in got] == [type(v) for _, v in expected]  # 1 == True == 1.0
        assert rows[len(expected) - 2]["quality"] == "stale"
    finally:
        await j.close()
    conn = sqlite3.connect(j.path)
    conn.execute("DELETE FROM journal")  # the next flush starts after an empty table: seq pinned
    conn.commit()
    conn.close()
    j = open_journal(tmp_path, flush_max_items=5000, keep_history=None)
    try:
        j.append(readings(1500))
        assert await j.flush() == len(expected) + 1500
        assert [r["seq"] for r in j.read(0, 2000)] == list(range(len(expected) + 1, len(expected) + 1501))
    finally:
        await j.close()


def test_flushes_of_every_size_compile_one_multi_row_insert_per_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite keeps every statement shape a connection has run compiled in its statement cache
    (a 1,000-row INSERT: about 550 kB of its memory): flushes of 1 to 1,100 rows run one
    single-row statement (the seq bound) and multi-row statements of one head, a shape per size,
    none of them twice (the seq-bound first row inside them made every size exist twice)."""
    monkeypatch.setattr(rows_module, "_insert_sql", {})
    path = tmp_path / "j.db"
    schema.migrate(conn := sqlite3.connect(path, isolation_level=None), str(path))
    seq = 1
    for n in range(1, 1101):
        batch = [(float(i), f"p{i % 7}", float(i), 0) for i in range(n)]
        conn.execute("BEGIN")
        assert insert_readings(conn, batch, seq) == seq + n - 1
        conn.execute("COMMIT")
        seq += n
    assert conn.execute("SELECT count(*), min(seq), max(seq) FROM journal").fetchone() == (
        seq - 1,
        1,
        seq - 1,
    )
    conn.close()
    shapes = rows_module._insert_sql
    assert {head for head, _, _ in shapes} == {rows_module.AUTO_READING_VALUES}
    sizes = sorted(n for _, n, _ in shapes)
    assert sizes == [1 << k for k in range(10)] + [rows_module.ROWS_PER_INSERT], sizes


def test_statements_shrink_to_the_variable_limit_of_the_sqlite_build(tmp_path: Path) -> None:
    """A SQLite built with the old 999-variable limit still takes every row, in order, with the
    generic statements and with the journal's (whose first row goes alone, its seq bound)."""
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    conn.execute("CREATE TABLE t (a, b, c, d)")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    rows = [(i, f"p{i}", float(i), i % 3) for i in range(1234)]
    for n in (0, 1, 249, 250, 1234):
        conn.execute("DELETE FROM t")
        insert_many(conn, "INSERT INTO t(a, b, c, d) VALUES ", 4, rows[:n])
        assert conn.execute("SELECT a, b, c, d FROM t ORDER BY rowid").fetchall() == rows[:n]
    conn.close()
    # the journal's own statements: the first seq bound beside each row's four values
    records: list[Reading | Event] = [Reading(float(i), f"p{i % 5}", float(i), 0) for i in range(5003)]
    records[248] = records[5001] = Event("door", "gate", "info", {"open": True}, 248.0)
    for limit in (999, 1000, None):  # None: the build's own, where a full step is one statement
        path = tmp_path / f"j{limit}.db"
        schema.migrate(journal := sqlite3.connect(path, isolation_level=None), str(path))
        if limit is not None:
            journal.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
        seq = 1
        for n in (1, 248, 249, 250, 1234, 4999, 5000, 5003):
            journal.execute("BEGIN")
            insert_records(journal, records[:n], seq)
            journal.execute("COMMIT")
            got = journal.execute(
                "SELECT seq, ts, point, kind FROM journal WHERE seq >= ? ORDER BY seq", (seq,)
            )
            assert got.fetchall() == [
                (seq + i, r.ts, r.point if isinstance(r, Reading) else r.source, getattr(r, "kind", None))
                for i, r in enumerate(records[:n])
            ]
            seq += n
        journal.close()


async def test_events_among_thousands_of_readings_keep_their_seq_columns_and_class(tmp_path: Path) -> None:
    """A flush's events go in as rows of the readings' statements and get their event columns
    after: each at the seq it was appended at, with its kind, severity, payload and privacy class,
    whether it comes first, last, next to another event, or beyond one UPDATE's block of events."""
    j = open_journal(tmp_path, flush_max_items=5000, keep_history=None)
    records: list[Reading | Event] = []
    for i in range(6000):
        if i in (0, 1, 2, 4999, 5000, 5999) or i % 17 == 0:
            kind = "blood_pressure" if i % 2 else "door"
            records.append(Event(kind, f"src{i % 3}", "warning", {"i": i, "ok": True}, float(i)))
        else:
            records.append(Reading(float(i), f"m.p{i % 7}", i if i % 5 else i % 10 == 0, 0))
    events = sum(isinstance(r, Event) for r in records)
    assert events > 300  # more than one UPDATE's block in the first flush
    try:
        j.append(records)
        assert await j.flush() == 6000
        rows = j.read(0, 7000)
        classes = sql(j, "SELECT seq, privacy, quality IS NULL, value IS NULL FROM journal ORDER BY seq")
    finally:
        await j.close()
    assert [r["seq"] for r in rows] == list(range(1, 6001))
    for rec, row, (_seq, privacy, no_quality, no_value) in zip(records, rows, classes, strict=True):
        if isinstance(rec, Event):
            assert (row["type"], row["kind"], row["source"], row["severity"]) == (
                "event",
                rec.kind,
                rec.source,
                "warning",
            )
            assert row["payload"] == rec.payload and row["ts"] == rec.ts
            assert privacy == (2 if rec.kind == "blood_pressure" else 0)
            assert no_quality and no_value
        else:
            assert (row["type"], row["point"], row["value"], row["ts"]) == ("reading", *rec[1:3], rec.ts)
            assert type(row["value"]) is type(rec.value)
            assert privacy == 0 and not no_quality


async def test_drained_returns_once_the_writer_took_the_records_before_they_commit(tmp_path: Path) -> None:
    """drained(n): the producer goes on as soon as no more than n records wait for the writer,
    while the step it took still waits for SQLite (another connection holds the write lock)."""
    j = open_journal(tmp_path, flush_max_items=1000)
    blocker = sqlite3.connect(j.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the writer's step waits in its own BEGIN IMMEDIATE
        j.append(readings(5000))
        left = await asyncio.wait_for(j.drained(4000), 10)
        assert left <= 4000 and j.pending <= 4000
        assert j.committed_seq == 0  # taken, not committed
        blocker.execute("COMMIT")
        assert await j.drained(10_000) == j.pending  # nothing to wait for: answered at once
        assert await j.flush() == 5000
        assert [r["seq"] for r in j.read(0, 6000)] == list(range(1, 5001))
    finally:
        blocker.close()
        await j.close()
    with pytest.raises(JournalClosed):
        await j.drained(0)


async def test_wait_committed_wakes_at_the_commit_it_waits_for(tmp_path: Path) -> None:
    """The writer wakes the event loop after a commit only while someone waits: a waiter that
    started before the records were appended still wakes at their commit, not at its timeout."""
    j = open_journal(tmp_path)
    try:
        j.append(readings(10))
        first = await j.flush()
        waiter = asyncio.ensure_future(j.wait_committed(first, timeout=60))
        await asyncio.sleep(0)  # let it start waiting (it runs up to its first await)
        assert not waiter.done()
        j.append(readings(5))
        assert await asyncio.wait_for(waiter, 10) == first + 5
        assert await j.wait_committed(first, timeout=60) == first + 5  # already there: at once
    finally:
        await j.close()


async def test_a_flush_whose_numbering_diverges_is_rolled_back_and_retried(tmp_path: Path) -> None:
    """SQLite numbers a flush's rows after the largest seq in the table: a row above the journal's
    own (another writer's) would shift them, so the writer checks the last rowid before it
    commits, rolls back, keeps the records and retries until the numbering holds."""
    j = open_journal(tmp_path)
    foreign = sqlite3.connect(j.path, isolation_level=None)
    try:
        j.append(readings(10))
        assert await j.flush() == 10
        foreign.execute("INSERT INTO journal(seq, ts, point, value, quality) VALUES (15, 0, 'x.y', 1, 0)")
        j.append(readings(10))
        await until(lambda: j.failing and "numbering diverged" in j.last_error, what="the refused commit")
        assert j.committed_seq == 10
        assert foreign.execute("SELECT seq FROM journal WHERE seq > 10").fetchall() == [(15,)]
        foreign.execute("DELETE FROM journal WHERE seq = 15")
        assert await j.flush() == 20
        assert [r["seq"] for r in j.read(0, 100)] == list(range(1, 21))
        assert not j.failing
    finally:
        foreign.close()
        await j.close()
