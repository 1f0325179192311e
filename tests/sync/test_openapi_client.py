"""A client generated from the live OpenAPI document by a generator nobody here wrote
(openapi-python-client) reads the API: it pages the stream, acknowledges, and parses the lists.

A document the generator half-understands still yields a client, with models missing or responses
dropped: the test fails on every warning except content types the generator does not handle
(a YAML rule pack, a JPEG snapshot), then uses the client for real against a running site.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.api.tokens import create_token
from edge.model import Event, PointInfo, Reading
from tests.support.site import running_site

CITY = "city-token-0123456789"
PACKAGE = "edge_api_client"
#: content types openapi-python-client 0.29 cannot model (the privacy export is JSON lines);
#: everything else must come through
UNSUPPORTED_CONTENT = ("application/yaml", "image/jpeg", "application/x-ndjson")
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


def _warnings(output: str) -> list[str]:
    """The generator's warnings, each with the lines that explain it."""
    blocks = re.split(r"\n(?=WARNING |Unable to process)", output)
    return [b.strip() for b in blocks if b.startswith(("WARNING", "Unable"))]


def _generate(doc_text: str, tmp_path: Path) -> Any:
    if not GENERATOR.exists():
        pytest.fail(f"openapi-python-client is not installed in {GENERATOR.parent} (a test dependency)")
    tmp_path.mkdir()
    doc = tmp_path / "openapi.json"
    doc.write_text(doc_text, encoding="utf-8")
    out = tmp_path / "client"
    proc = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(doc), "--output-path", str(out), "--meta", "none"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    problems = [w for w in _warnings(output) if not any(t in w for t in UNSUPPORTED_CONTENT)]
    assert problems == [], "\n\n".join(problems)
    (tmp_path / PACKAGE).symlink_to(out, target_is_directory=True)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))


async def test_generated_client_pages_the_stream_and_acks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITY_TOKEN", CITY)
    doc = {"consumers": [{"id": "city", "token_env": "CITY_TOKEN"}]}
    async with running_site(tmp_path, doc) as rt:
        rt.hub.register_points([PointInfo("meter.kw", "meter", "kw", unit="kW")])
        t = time.time()
        batch: list[Any] = [Reading(t + i * 1e-3, "meter.kw", float(i)) for i in range(30)]
        batch.insert(10, Event("vehicle_passage", "gate-north", payload={"direction": "in"}, ts=t + 0.0105))
        rt.hub.ingest(batch)
        committed = await rt.journal.flush()
        base = f"http://127.0.0.1:{rt.web_port}"
        read_token = create_token(rt.state, "generator", ["read"])
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{base}/api/v1/openapi.json", headers={"Authorization": f"Bearer {read_token}"}) as r,
        ):
            assert r.status == 200
            live_doc = await r.text()

        pkg = await asyncio.to_thread(_generate, live_doc, tmp_path / "gen")
        client_mod = importlib.import_module(f"{PACKAGE}.client")
        api = f"{PACKAGE}.api.default"
        stream = importlib.import_module(f"{api}.stream")
        ack = importlib.import_module(f"{api}.ack")
        models = importlib.import_module(f"{PACKAGE}.models")
        assert pkg is not None

        city = client_mod.AuthenticatedClient(base_url=base, token=CITY)
        seen: list[Any] = []
        after = 0
        async with city as c:
            while True:
                page = await stream.asyncio(client=c, after=after, limit=7)
                assert isinstance(page, models.StreamResponse200), page
                seen.extend(page.items)
                after = page.next_
                if not page.more:
                    break
            seqs = [item.seq for item in seen]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            assert seqs[-1] == committed
            events = [i for i in seen if isinstance(i, models.EventRecord)]
            readings = [i for i in seen if isinstance(i, models.ReadingRecord)]
            assert [e.kind for e in events if e.kind == "vehicle_passage"] == ["vehicle_passage"]
            passage = next(e for e in events if e.kind == "vehicle_passage")
            assert passage.payload.additional_properties == {"direction": "in"}
            assert [r.value for r in readings if r.point == "meter.kw"] == [float(i) for i in range(30)]

            acked = await ack.asyncio(id="city", client=c, body=models.AckBody(seq=seqs[20]))
            assert acked is not None and acked.cursor == seqs[20]
            rest = await stream.asyncio(client=c, limit=100)  # from the consumer's cursor
            assert [i.seq for i in rest.items] == seqs[21:]
            # ack=true: the generated parameter acknowledges `after`, then pages on from it
            on = await stream.asyncio(client=c, after=seqs[25], limit=2, ack=True)
            assert isinstance(on, models.StreamResponse200), on
            assert [i.seq for i in on.items] == seqs[26:28]
            assert rt.journal.get_cursor("city") == seqs[25]
            back = await stream.asyncio_detailed(client=c, after=seqs[20], ack=True)
            assert back.status_code == 409 and rt.journal.get_cursor("city") == seqs[25]

        reader = client_mod.AuthenticatedClient(base_url=base, token=read_token)
        async with reader as c:
            points = await importlib.import_module(f"{api}.points").asyncio(client=c)
            assert "meter.kw" in [p.id for p in points.points]
            latest = await importlib.import_module(f"{api}.latest").asyncio(client=c)
            assert any(v.point == "meter.kw" and v.value == 29.0 for v in latest.latest)
            sync = await importlib.import_module(f"{api}.sync_status").asyncio(client=c)
            assert [x.id for x in sync.consumers] == ["city"]
            letters = await importlib.import_module(f"{api}.dead_letters").asyncio(client=c)
            assert letters.dead_letters == []
