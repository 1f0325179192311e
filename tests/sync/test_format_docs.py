"""The batch format matches docs/upstream-format.schema.json, and docs/sync.md names every key."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema_rs
import orjson

from edge.model import Event, Quality, Reading
from edge.store.records import IncludeConfig
from edge.sync.http_sink import HttpSinkConfig, encode_batch
from edge.sync.influx_sink import InfluxSinkConfig
from edge.sync.sink_config import BatchConfig, PushSinkConfig, RetryConfig, TimeoutConfig
from tests.support.site import running_site
from tests.sync.helpers import ROOT

SCHEMA = ROOT / "docs" / "upstream-format.schema.json"
DOC = ROOT / "docs" / "sync.md"


async def test_real_batches_match_the_published_schema(tmp_path: Path) -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    async with running_site(tmp_path, {}) as rt:
        t = time.time()
        rt.hub.ingest(
            [
                Reading(t, "meter-b1.active_power", 3.25),
                Reading(t, "meter-b1.count", 7),
                Reading(t, "gate-north.barrier_open", True, Quality.STALE),
                Reading(t, "gate-north.plate", "粤B12345"),
                Reading(t, "gate-north.loop", None, Quality.BAD),
                Event(
                    "alert", "rule-1", "warning", {"state": "fired", "value": 81.5, "nested": {"a": [1]}}, t
                ),
            ]
        )
        committed = await rt.journal.flush()
        rows = rt.journal.read_rows(0, 100)
    doc = orjson.loads(encode_batch("test-site", "central", rows, 1, committed))
    errors = [e.message for e in validator.iter_errors(doc)]
    assert not errors, errors
    assert doc["readings"][2]["value"] is True and doc["readings"][2]["quality"] == "stale"
    assert doc["events"][-1]["payload"]["nested"] == {"a": [1]}
    broken = dict(doc, readings=[{**doc["readings"][0], "quality": "fine"}])
    assert not validator.is_valid(broken)


def test_docs_name_every_sink_key() -> None:
    text = DOC.read_text()
    models = [
        PushSinkConfig,
        HttpSinkConfig,
        InfluxSinkConfig,
        BatchConfig,
        TimeoutConfig,
        RetryConfig,
        IncludeConfig,
    ]
    missing = sorted(
        {k for m in models for k in m.model_fields if f"`{k}" not in text and f"{k}:" not in text}
    )
    assert not missing, f"docs/sync.md does not mention: {missing}"
    for route in (
        "/api/v1/stream",
        "/api/v1/consumers/{id}/ack",
        "/api/v1/sync",
        "/metrics",
        "edge sync status",
    ):
        assert route in text
