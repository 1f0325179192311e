"""Acceptance: a failing receiver, a gateway killed with SIGKILL and restarted mid-run several
times; afterwards the receiver holds every seq from 1 to the last committed one, in order,
duplicates only where a new gateway instance replays what the killed one sent after its last
durable cursor, and the counters match."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from edge.api.tokens import create_token
from edge.state import StateDB
from tests.support.site import busy_meter
from tests.sync.helpers import ROOT, free_port, sink, wait_for

KILLS = 3
TOTAL_TIMEOUT = "1500ms"
HANG = "2.5"  # seconds the receiver holds a request in its hang mode: past TOTAL_TIMEOUT


def site_doc(tmp_path: Path, url: str, port: int, with_sim: bool) -> dict[str, Any]:
    return {
        "site": {"id": "chaos-site"},
        "storage": {"path": str(tmp_path / "edge.db")},
        "web": {"listen": f"127.0.0.1:{port}"},
        "devices": [busy_meter()] if with_sim else [],
        "upstream": [
            sink(
                url,
                batch={"max_items": 200, "max_age": "100ms"},
                # a hang costs a whole `total`: short, so the run is not mostly waiting on them;
                # a slow answer past it is a retry of the same batch, which the checks allow
                timeout={"connect": "1s", "total": TOTAL_TIMEOUT},
                retry={"initial": "50ms", "max": "1s"},
            )
        ],
    }


def start_gateway(site: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(site)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def kill_then_drain(
    tmp_path: Path, rx: Any, busy: Path, drain: Path, web_port: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the busy site KILLS times, each killed with SIGKILL once it delivered a few batches,
    then the drain site until its backlog is empty; returns the final sink status and the
    receiver's log, after checking the journal's integrity and its durable cursor."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(KILLS):
            before = len(await rx.accepted())
            gw = start_gateway(busy)
            procs.append(gw)

            async def progressed(before: int = before) -> bool:
                return len(await rx.accepted()) >= before + 5

            await wait_for(progressed, 60, "the gateway to deliver a few batches")
            os.kill(gw.pid, signal.SIGKILL)
            gw.wait(10)

        # last run: no devices, so the journal stops growing; let it drain through the failures
        state = StateDB(str(tmp_path / "state.db"))
        token = create_token(state, "chaos", ["read"])
        state.close()
        gw = start_gateway(drain)
        procs.append(gw)
        base = f"http://127.0.0.1:{web_port}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

            async def sync_status() -> dict[str, Any] | None:
                try:
                    async with http.get(f"{base}/api/v1/sync") as r:
                        return (await r.json())["sinks"][0] if r.status == 200 else None
                except aiohttp.ClientError:
                    return None

            async def drained() -> bool:
                st = await sync_status()
                return bool(st and st["backlog_rows"] == 0 and st["cursor"] > 0 and not st["in_flight"])

            await wait_for(drained, 90, "the last gateway run to drain its backlog")
            status = await sync_status()
            assert status is not None
        log = await rx.log()
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(15) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)

    conn = sqlite3.connect(tmp_path / "edge.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cursor = conn.execute("SELECT seq FROM cursors WHERE name='central'").fetchone()[0]
    conn.close()
    assert cursor == status["cursor"]
    return status, log


async def test_every_seq_arrives_in_order_across_kill9_and_failures(tmp_path: Path, receiver) -> None:  # type: ignore[no-untyped-def]
    rx = receiver("--fail", "0.35", "--hang", HANG, "--seed", "7", "--cycle")
    web_port = free_port()
    busy = tmp_path / "busy.yaml"
    busy.write_text(yaml.safe_dump(site_doc(tmp_path, rx.url, web_port, True)))
    drain = tmp_path / "drain.yaml"
    drain.write_text(yaml.safe_dump(site_doc(tmp_path, rx.url, web_port, False)))

    status, log = await kill_then_drain(tmp_path, rx, busy, drain, web_port)
    cursor = status["cursor"]

    accepted = [e for e in log if e["outcome"].endswith("ok")]
    received: set[int] = set()
    seen_instances: set[str] = set()
    caught_up: set[str] = set()  # instances that have delivered something new
    last_key: dict[str, str] = {}
    top = 0
    duplicates = 0
    for e in accepted:
        seqs = e["seqs"]
        assert seqs == list(range(e["first"], e["last"] + 1)), "a batch must be a contiguous seq range"
        assert e["first"] <= top + 1, f"gap before seq {e['first']} (received up to {top})"
        if e["first"] <= top:
            # a replay is allowed only across a boundary: a new gateway instance re-sending what
            # the killed one delivered after its last durable cursor (before it delivers anything
            # new), or the retry of a batch the receiver took but the gateway never heard of (a
            # response lost to the client's timeout): same instance, same Idempotency-Key
            replaying = e["instance"] not in caught_up
            retry = last_key.get(e["instance"]) == e["key"]
            assert replaying or retry, f"duplicate inside one instance at seq {e['first']}"
            duplicates += 1
        if e["last"] > top:
            caught_up.add(e["instance"])
        seen_instances.add(e["instance"])
        last_key[e["instance"]] = e["key"]
        top = max(top, e["last"])
        received.update(seqs)
    # every seq the gateway committed before its final stop, each at least once
    assert received == set(range(1, cursor + 1))
    assert len(seen_instances) == KILLS + 1
    assert duplicates <= len(accepted) // 2  # replays are the exception, not the rule

    # the failures really happened, of every kind
    outcomes = {e["outcome"] for e in log}
    assert {"500", "429", "hang", "reset", "slow-ok"} <= outcomes, outcomes
    # counters of the last instance match what the receiver saw from it
    mine = [e for e in log if e["instance"] == status["instance"]]
    ok = [e for e in mine if e["outcome"].endswith("ok")]
    by_key = {e["key"]: e for e in ok}  # a retried key was taken twice only if a response got lost
    assert status["sent_batches"] == len(by_key)
    assert status["sent_rows"] == sum(len(e["seqs"]) for e in by_key.values())
    assert status["failures"] + status["sent_batches"] == len(mine)
    assert status["failures"] == status["retries"]
    assert status["dead_letters"] == 0
