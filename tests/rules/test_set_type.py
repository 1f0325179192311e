"""A `set:` point keeps one type: an expression that gives an int for some inputs and a float for
others (`value - 5 if value > 5 else 0`) sends floats only to a float point, as InfluxDB keeps
one type per field and refuses the other for good. `type:` declares the point's type; a value
that does not convert is refused: the action fails, counted and journaled, and the point keeps
its last value. Checked in a running site, down to the values' types in the journal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.model import Event, PointType, Reading
from tests.support.site import running_site
from tests.support.waiting import until, until_async

SITE = {"devices": [], "rules": {"max_actions_per_minute": 600}}
CLAMP = "value - 5 if value > 5 else 0"


def _rule(rid: str, when: str, point: str, **spec: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "when": when,
        "notify": "always",
        "then": [{"set": {"point": point, "expr": CLAMP, **spec}}],
    }


async def _journaled(rt: Any, point: str, n: int) -> list[Any]:
    """The values of `point` in the journal, once there are `n`."""
    found: list[Any] = []

    async def enough() -> bool:
        await rt.journal.flush()
        found[:] = [r[3] for r in rt.journal.read_rows(0, 10_000) if r[2] == point]
        return len(found) >= n

    await until_async(enough, what=f"{n} values of {point} journaled")
    return found


async def test_an_int_from_the_expression_goes_to_a_float_point_as_a_float(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        rt.components["rules"].put(_rule("net", "m.p", "virt.net_kw"), "test", "create")
        t = time.time()
        for i, v in enumerate([7.5, 3.0, 9.0, 5.0]):  # 2.5 (the first value: a float point), 0, 4.0, 0
            rt.hub.ingest([Reading(t + i, "m.p", v)])
        net = await _journaled(rt, "virt.net_kw", 4)
        assert net == [2.5, 0.0, 4.0, 0.0] and {type(v) for v in net} == {float}, net
        assert rt.hub.points["virt.net_kw"].type == PointType.FLOAT
        assert rt.components["rules"].status()["actions_failed"] == 0


async def test_a_declared_type_converts_and_what_does_not_convert_is_refused(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        events: list[Event] = []
        rt.hub.subscribe(lambda recs: events.extend(r for r in recs if isinstance(r, Event)))
        rules = rt.components["rules"]
        rules.put(_rule("net-f", "m.q", "virt.net_f", type="float"), "test", "create")
        rules.put(_rule("net-i", "m.r", "virt.net_i", type="int"), "test", "create")
        t = time.time()
        for i, n in enumerate([3, 8, 4]):  # ints in: 0, 3, 0
            rt.hub.ingest([Reading(t + i, "m.q", n)])
        for i, v in enumerate([3.0, 8.0, 7.5, 9.0]):  # 0, 3.0 -> 3, 2.5 refused, 4.0 -> 4
            rt.hub.ingest([Reading(t + i, "m.r", v)])

        net_f = await _journaled(rt, "virt.net_f", 3)
        assert net_f == [0.0, 3.0, 0.0] and {type(v) for v in net_f} == {float}, net_f
        assert rt.hub.points["virt.net_f"].type == PointType.FLOAT
        net_i = await _journaled(rt, "virt.net_i", 3)
        assert net_i == [0, 3, 4] and {type(v) for v in net_i} == {int}, net_i

        failed = await until(
            lambda: [e for e in events if e.kind == "rule_action_failed"], what="the refused set"
        )
        assert len(failed) == 1 and failed[0].source == "net-i", failed
        assert "2.5 is not a valid int for virt.net_i" in failed[0].payload["error"], failed
        assert rules.status()["actions_failed"] == 1
        assert rt.hub.latest["virt.net_i"].value == 4
