"""Live windows have a memory budget: a window never holds more than MAX_RAW_SAMPLES samples one
by one (a longer one is downsampled into buckets, its min, max and count exact for the samples the
buckets hold, its avg close), and a rule whose windows would take the rules' windows over
`rules.window_memory_mb` when full is refused when it is validated, saved or imported, counted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Reading
from rules.windows import BUCKETS, MAX_RAW_SAMPLES, WINDOW_BYTES, Window
from tests.rules.test_api import Client
from tests.support.site import running_site
from tests.support.waiting import until


def test_a_long_window_on_a_fast_point_is_downsampled_within_its_bound() -> None:
    w = Window(31 * 86400.0)  # avg('m1.p', '31d') on a 50 ms point
    n = 3 * MAX_RAW_SAMPLES
    values = [float((i * 7919) % 1000) for i in range(n)]
    for i, v in enumerate(values):
        w.add(1.7e9 + i * 0.05, v)
    now = 1.7e9 + n * 0.05
    assert len(w.samples) <= MAX_RAW_SAMPLES and w.coarse and w.memory() <= WINDOW_BYTES
    # every sample is in the window: count, min, max, sum and avg are exact
    assert w.count(now) == n
    assert (w.min(now), w.max(now)) == (min(values), max(values))
    assert abs(w.avg(now) - sum(values) / n) < 1e-6
    assert w.delta(now) == values[-1] - values[0]


def test_a_downsampled_window_slides_by_whole_buckets() -> None:
    span = 1000.0
    w = Window(span)
    step = span / (2 * MAX_RAW_SAMPLES)  # twice the samples the window holds one by one
    n = 6 * MAX_RAW_SAMPLES  # three spans
    ts = [i * step for i in range(n)]
    values = [float(i % 977) + (i // 50_000) * 1000 for i in range(n)]  # later spans higher
    for t, v in zip(ts, values, strict=True):
        w.add(t, v)
    now = ts[-1]
    assert w.coarse and w.memory() <= WINDOW_BYTES
    bucket = span / BUCKETS
    inside = [v for t, v in zip(ts, values, strict=True) if t >= now - span]
    reach = [v for t, v in zip(ts, values, strict=True) if t >= now - span - bucket]
    # what it holds reaches back at most one bucket before the span
    assert len(inside) <= w.count(now) <= len(reach)
    assert min(reach) <= w.min(now) <= min(inside) and max(inside) <= w.max(now) <= max(reach)
    assert min(reach) <= w.avg(now) <= max(reach)
    assert abs(w.avg(now) - sum(inside) / len(inside)) <= (max(reach) - min(reach)) * (bucket / span) * 2
    # a reading out of order lands in its bucket; one older than the span is not taken
    count = w.count(now)
    w.add(now - span / 2, -5.0)
    w.add(now - 2 * span, -50.0)
    assert w.count(now) == count + 1 and w.min(now) == -5.0


def _site(budget_mb: int | None = None) -> dict[str, Any]:
    rules: dict[str, Any] = {"window_backfill_rows": 0}
    if budget_mb is not None:
        rules["window_memory_mb"] = budget_mb
    return {
        "devices": [
            {
                "id": "m1",
                "driver": "sim",
                "points": [{"name": "slow", "signal": "random", "min": 0, "max": 100, "interval": "1h"}],
            }
        ],
        "rules": rules,
    }


async def test_a_rule_whose_windows_do_not_fit_is_refused_and_counted(tmp_path: Path) -> None:
    async with running_site(tmp_path, _site(budget_mb=3)) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        token = create_token(rt.state, "tech", ["read", "rules"])
        tech = Client(session, rt.web_port, token)
        comp = rt.components["rules"]
        # a long window: it counts at the most one window takes
        first = {"id": "a", "when": "m1.slow", "if": "avg('v.fast', '31d') > 5"}
        status, body = await tech.call("POST", "", first)
        assert status == 201, body
        second = {"id": "b", "when": "m1.slow", "if": "max('v.other', '31d') > 5"}
        for path in ("/validate", ""):
            status, body = await tech.call("POST", path, second)
            assert status == 422, body
            assert "rules.window_memory_mb" in body["detail"] and "v.other" in body["detail"]
            assert body["errors"][0]["field"] == "if"
        assert (await tech.call("GET", "/b"))[0] == 404
        # a pack whose two windows fit one by one but not together imports nothing
        pack = (
            "rules:\n"
            "  - {id: c, when: m1.slow, if: \"min('v.c', '31d') > 1\"}\n"
            "  - {id: d, when: m1.slow, if: \"min('v.d', '31d') > 1\"}\n"
        )
        await tech.call("DELETE", "/a")
        status, body = await tech.call("POST", "/import", data=pack)
        assert status == 422 and any("v.d" in e for e in body["errors"]), body
        assert "c" not in comp.engine.rules
        # a window over a point of known interval counts what it holds when full: it fits
        known = {"id": "e", "when": "m1.slow", "if": "avg('m1.slow', '31d') > 5"}
        assert (await tech.call("POST", "", known))[0] == 201
        assert comp.status()["window_budget_refusals"] == 3
        metrics = f"http://127.0.0.1:{rt.web_port}/metrics"
        async with session.get(metrics, headers={"Authorization": f"Bearer {token}"}) as resp:
            text = await resp.text()
        assert 'edge_rules_count_total{counter="window_budget_refusals"} 3.0' in text


async def test_a_live_window_stays_within_its_bound(tmp_path: Path) -> None:
    async with running_site(tmp_path, _site()) as rt:
        comp = rt.components["rules"]
        comp.put({"id": "long", "when": "m1.slow", "if": "avg('v.fast', '31d') > 50"}, "tech", "create")
        start = time.time() - 3600
        total = 2 * MAX_RAW_SAMPLES
        for k in range(0, total, 5000):
            rt.hub.ingest([Reading(start + i * 0.05, "v.fast", float(i % 100)) for i in range(k, k + 5000)])
        window = comp.engine.windows[("v.fast", 31 * 86400.0)]
        await until(lambda: window.count(time.time()) == total, what="every reading in the window")
        assert window.coarse and window.memory() <= WINDOW_BYTES
        assert window.avg(time.time()) == sum(i % 100 for i in range(total)) / total
        status = comp.status()
        assert status["windows_downsampled"] == 1 and status["window_memory_bytes"] <= WINDOW_BYTES
