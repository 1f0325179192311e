"""The simulated driver through a real runtime: signals, writes, events, faults, supervision."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.model import HealthState, Reading
from tests.store.helpers import sql
from tests.support.site import running_site
from tests.support.waiting import until


def _readings(rt, point: str) -> list[Reading]:  # type: ignore[no-untyped-def]
    return [r for r in rt._seen if type(r) is Reading and r.point == point]


@contextlib.asynccontextmanager
async def _watched(tmp_path: Path, doc: str) -> AsyncIterator[Any]:
    """The running site, with everything its hub publishes collected in `rt._seen`."""
    async with running_site(tmp_path, doc, web=False) as rt:
        rt._seen = []
        rt.hub.subscribe(rt._seen.extend)
        yield rt


def _beside_a_steady_device(device_id: str, fault: str) -> str:
    """A site of device `device_id` with `fault` and device `steady` without one, both reporting `v`."""
    return f"""
devices:
  - id: {device_id}
    driver: sim
    points:
      - {{name: v, signal: constant, value: 1, interval: 20ms}}
    faults:
      - {fault}
  - id: steady
    driver: sim
    points:
      - {{name: v, signal: constant, value: 2, interval: 20ms}}
"""


SIGNALS = """
devices:
  - id: dev
    driver: sim
    seed: 1
    points:
      - {name: counter, signal: counter, start: 10, step: 2, interval: 20ms}
      - {name: ramp, signal: ramp, min: 0, max: 100, period: 1h, interval: 20ms}
      - {name: walk, signal: random_walk, min: 0, max: 1, step: 0.5, interval: 20ms}
      - {name: mode, type: int, signal: step, values: [1, 2, 3], period: 60ms, interval: 20ms}
      - {name: flag, type: bool, signal: toggle, period: 100ms, interval: 20ms}
      - {name: gate, type: bool, signal: constant, value: false, writable: true, interval: 1h}
    events:
      - {kind: blood_pressure, every: 30ms, generator: blood_pressure, privacy: sensitive}
"""


async def test_signals_have_their_shapes(tmp_path: Path) -> None:
    async with _watched(tmp_path, SIGNALS) as rt:
        await until(
            lambda: (
                len(_readings(rt, "dev.counter")) >= 5
                and len(set(r.value for r in _readings(rt, "dev.flag"))) == 2
            )
        )
        counter = [r.value for r in _readings(rt, "dev.counter")]
        assert all(b - a == 2 for a, b in itertools.pairwise(counter))
        assert all(0 <= r.value <= 100 for r in _readings(rt, "dev.ramp"))
        assert all(0 <= r.value <= 1 for r in _readings(rt, "dev.walk"))
        assert {r.value for r in _readings(rt, "dev.mode")} <= {1, 2, 3}
        assert all(type(r.value) is bool for r in _readings(rt, "dev.flag"))
        await until(lambda: any(getattr(e, "kind", "") == "blood_pressure" for e in rt._seen))
        bp = next(e for e in rt._seen if getattr(e, "kind", "") == "blood_pressure")
        assert bp.source == "dev" and bp.payload["systolic_mmhg"] > bp.payload["diastolic_mmhg"]
    # everything the hub saw is in the journal, in order, with the types preserved
    from edge.store import Journal

    j = Journal.open_readonly(str(tmp_path / "edge.db"))
    try:
        records = j.read(0, 100000)
        flags = [r["value"] for r in records if r["type"] == "reading" and r["point"] == "dev.flag"]
        assert flags and all(type(v) is bool for v in flags)
        counter = [r["value"] for r in records if r["type"] == "reading" and r["point"] == "dev.counter"]
        assert counter[:3] == [10.0, 12.0, 14.0]
    finally:
        j.close_sync()


async def test_a_write_is_echoed_and_journaled_as_a_command(tmp_path: Path) -> None:
    async with _watched(tmp_path, SIGNALS) as rt:
        result = await rt.hub.write("dev.gate", True, source="test")
        assert result.ok, result
        await until(lambda: any(r.value is True for r in _readings(rt, "dev.gate")))
        assert rt.hub.latest["dev.gate"].value is True
        refused = await rt.hub.write("dev.counter", 5, source="test")
        assert refused.status == "rejected" and "not writable" in refused.reason
        bad = await rt.hub.write("dev.gate", "maybe", source="test")
        assert bad.status == "rejected" and "not a valid bool" in bad.reason
        commands = [e for e in rt._seen if getattr(e, "kind", "") == "command"]
        assert [c.payload["status"] for c in commands] == ["ok", "rejected", "rejected"]


async def test_dropout_marks_points_stale_then_recovers(tmp_path: Path) -> None:
    doc = _beside_a_steady_device("flaky", "{type: dropout, every: 10s, first_after: 100ms, duration: 200ms}")
    async with _watched(tmp_path, doc) as rt:
        await until(lambda: rt.slots["flaky"].health.state == HealthState.OFFLINE, what="offline")
        assert "dropout" in rt.slots["flaky"].health.reason

        def stale() -> list[Reading]:
            return [r for r in _readings(rt, "flaky.v") if r.quality == 2 and r.value is None]

        # the stale readings follow the health flag through the driver's queue
        went_stale = (await until(stale, what="the stale reading of the dropout"))[0]
        await until(lambda: rt.slots["flaky"].health.state == HealthState.ONLINE, what="recovery")

        def good_again() -> list[Reading]:
            return [r for r in _readings(rt, "flaky.v") if r.quality == 0 and r.ts > went_stale.ts]

        back = (await until(good_again, what="a good reading after the dropout"))[0]
        # the other device never stopped: it has readings stamped inside the dropout
        await until(
            lambda: any(went_stale.ts < r.ts < back.ts for r in _readings(rt, "steady.v")),
            what="readings of the steady device during the dropout",
        )

        def states() -> list[str]:
            return [e.payload["state"] for e in rt._seen if getattr(e, "kind", "") == "device_state"]

        # the health flag flips first; the event reaches the hub through the driver's queue
        await until(lambda: len(states()) >= 2, what="both device_state events")
        assert states()[:2] == ["offline", "online"]


async def test_garbage_is_reported_as_bad_quality(tmp_path: Path) -> None:
    doc = """
devices:
  - id: noisy
    driver: sim
    seed: 3
    points:
      - {name: v, signal: constant, value: 1, interval: 10ms}
    faults:
      - {type: garbage, probability: 0.5}
"""
    async with _watched(tmp_path, doc) as rt:
        await until(lambda: any(r.quality == 1 for r in _readings(rt, "noisy.v")))
        assert rt.slots["noisy"].health.errors > 0


async def test_a_crashing_driver_is_restarted_without_stopping_others(tmp_path: Path) -> None:
    doc = _beside_a_steady_device("crashy", "{type: crash, every: 10s, first_after: 50ms, duration: 1ms}")
    async with _watched(tmp_path, doc) as rt:
        rt.backoff_initial = 0.05
        await until(lambda: rt.slots["crashy"].restarts >= 2, what="two restarts")
        restarts = [e for e in rt._seen if getattr(e, "kind", "") == "driver_restart"]
        assert restarts and "simulated crash" in restarts[0].payload["error"]
        # backoff grows between restarts
        assert rt.slots["crashy"].backoff >= 0.1
        n = len(_readings(rt, "steady.v"))
        await until(lambda: len(_readings(rt, "steady.v")) > n + 3)


async def test_cursors_of_removed_sinks_and_consumers_are_pruned_at_start(tmp_path: Path) -> None:
    from edge.api.tokens import create_token

    doc = "devices: []\nconsumers:\n  - {id: city, token_env: EDGE_TEST_CITY_TOKEN}\n"
    import os

    os.environ["EDGE_TEST_CITY_TOKEN"] = "x" * 32
    try:
        async with running_site(tmp_path, doc, web=False) as rt:
            await rt.journal.register_cursor("old-sink", "sink")
            await rt.journal.register_cursor("old-consumer", "consumer")
            await rt.journal.register_cursor("token-consumer", "consumer")
            assert rt.state is not None
            create_token(rt.state, "t", ["pull"], consumer="token-consumer")
        async with running_site(tmp_path, doc, web=False) as rt:
            cursors = rt.journal.cursors()
            assert "city" in cursors and "token-consumer" in cursors
            assert "old-sink" not in cursors and "old-consumer" not in cursors, cursors
            await rt.journal.flush()
            removed = sql(rt.journal, "SELECT payload FROM journal WHERE kind='cursor_removed'")
            assert len(removed) == 2
    finally:
        del os.environ["EDGE_TEST_CITY_TOKEN"]
