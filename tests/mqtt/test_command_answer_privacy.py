"""The answer to an MQTT command that writes a personal point quotes the value written (a card
holder's reference), and the state DB keeps every answer for the replay window: it keeps it sealed
under that value's data key, so it is never on disk in clear, a re-sent request still gets it, and
`edge privacy forget` of the value shreds it; without a master key only its status is kept. The
kept requests leave the state DB once past the window, on a timer and at start, without waiting
for the next request. Real mosquitto, real gateway, raw bytes of the data files."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson

from edge.privacy.keyfile import create_master_key
from tests.mqtt.broker import Subscriber, mqtt_sink, sink_of
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until

COMMANDS = "edge/test-site/commands"
RESPONSES = "edge/test-site/responses"
HOLDER = "R-MQTT-70421"  # a card holder's reference no other test data carries
POINT = "door-1.card_holder"
SINK = "mqtt:central"


def site(tmp_path: Path, broker_port: int, master: Path | None, ttl: str = "5m") -> dict[str, Any]:
    """A door whose `card_holder` (a personal string) and `sp` (public) take writes, and the mqtt
    sink with commands; its files in `tmp_path/data`, apart from the broker's (which keeps the
    requests it relays)."""
    doc: dict[str, Any] = {
        "storage": {"path": str(tmp_path / "data" / "edge.db")},
        "devices": [
            {
                "id": "door-1",
                "driver": "sim",
                "points": [
                    {
                        "name": "card_holder",
                        "type": "str",
                        "signal": "constant",
                        "value": "nobody",
                        "interval": "1h",
                        "writable": True,
                        "privacy": "personal",
                    },
                    {
                        "name": "sp",
                        "type": "float",
                        "signal": "constant",
                        "value": 1,
                        "interval": "1h",
                        "writable": True,
                    },
                ],
            }
        ],
        "upstream": [mqtt_sink(broker_port, commands=True, command_ttl=ttl, max_privacy="personal")],
    }
    if master is not None:
        doc["privacy"] = {"master_key_file": str(master)}
    return doc


def request(rid: str, point: str, value: Any) -> bytes:
    return orjson.dumps({"id": rid, "point": point, "value": value, "ts": time.time()})


def answers_to(sub: Subscriber, rid: str) -> list[dict[str, Any]]:
    return [a for a in (orjson.loads(p) for p in sub.on(RESPONSES)) if a["id"] == rid]


def in_clear(folder: Path, *markers: bytes) -> list[tuple[str, bytes]]:
    """(file, marker) for each marker found in a file under `folder` (databases, -wal, -shm)."""
    return [
        (p.name, m) for p in sorted(folder.rglob("*")) if p.is_file() for m in markers if m in p.read_bytes()
    ]


def kept_rows(rt: Any) -> list[tuple[Any, ...]]:
    with rt.state.lock:
        return [tuple(r) for r in rt.state.conn.execute("SELECT sink, id FROM mqtt_requests").fetchall()]


async def ask(broker_port: int, sub: Subscriber, payload: bytes, rid: str, n: int) -> dict[str, Any]:
    """Publish `payload` as an operator; the `n`th answer to `rid`."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", broker_port, identifier="operator") as operator:
        await operator.publish(COMMANDS, payload, qos=1)
        await until(lambda: len(answers_to(sub, rid)) >= n, 20, what=f"answer {n} to {rid}")
    return answers_to(sub, rid)[n - 1]


async def started(stack: AsyncExitStack, tmp_path: Path, doc: dict[str, Any]) -> Any:
    rt = await stack.enter_async_context(running_site(tmp_path, doc, web=False))
    await until(lambda: sink_of(rt).status()["connected"], 20, what="the sink connected and subscribed")
    return rt


async def test_an_answer_about_a_personal_point_is_sealed_and_goes_with_a_forget(
    tmp_path: Path, broker
) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    master = tmp_path / "master.key"
    create_master_key(master)
    doc = site(tmp_path, b.port, master)
    config = site_file(tmp_path, doc)
    data = tmp_path / "data"
    holder_request = request("card-1", POINT, HOLDER)
    # what a guess of the value would be checked against, were the request's digest kept as it is
    digest = hashlib.sha256(orjson.dumps([POINT, HOLDER])).hexdigest().encode()
    async with Subscriber(b.port, RESPONSES) as sub:
        async with AsyncExitStack() as stack:
            rt = await started(stack, tmp_path, doc)
            first = await ask(b.port, sub, holder_request, "card-1", 1)
            assert (first["status"], first["value"]) == ("ok", HOLDER)
            public = await ask(b.port, sub, request("sp-1", "door-1.sp", 7.5), "sp-1", 1)
            assert public["status"] == "ok"
            # while the gateway runs: the WAL holds what was just written
            assert in_clear(data, HOLDER.encode(), digest) == []
            with rt.state.lock:
                kept = dict(
                    rt.state.conn.execute(
                        "SELECT id, answer FROM mqtt_requests WHERE sink=? AND id IN ('card-1', 'sp-1')",
                        (SINK,),
                    ).fetchall()
                )
            # a public answer is kept as it was given
            assert kept["card-1"] is None and orjson.loads(kept["sp-1"]) == public
        assert in_clear(data, HOLDER.encode(), digest) == []

        # restarted within the window: the same request sent again gets its answer, opened
        async with AsyncExitStack() as stack:
            rt = await started(stack, tmp_path, doc)
            again = await ask(b.port, sub, holder_request, "card-1", 2)
            assert again == first
            assert sink_of(rt).status()["commands_answered_again"] == 1
            assert sink_of(rt).status()["commands_done"] == {}

        done = edge_cli("privacy", "forget", "-c", str(config), "--subject", HOLDER)
        assert done.returncode == 0, done.stderr

        # forgotten: the kept answer no longer opens, and the request is still not run again
        async with AsyncExitStack() as stack:
            rt = await started(stack, tmp_path, doc)
            after = await ask(b.port, sub, holder_request, "card-1", 3)
            assert after["status"] == "refused" and after["value"] is None
            assert str(after["reason"]).startswith("replayed")
            assert sink_of(rt).status()["commands_done"] == {}
        assert in_clear(data, HOLDER.encode(), digest) == []


async def test_without_a_master_key_only_the_status_is_kept(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    """The journal of a site without a master key keeps the value in clear (forget cannot erase
    it there); the state DB keeps neither it nor a digest of it, and a re-sent request still gets
    its answer, the value given back from the request itself."""
    b = broker()
    doc = site(tmp_path, b.port, None)
    holder_request = request("card-2", POINT, HOLDER)
    digest = hashlib.sha256(orjson.dumps([POINT, HOLDER])).hexdigest().encode()
    async with Subscriber(b.port, RESPONSES) as sub:
        for run in (1, 2):
            async with AsyncExitStack() as stack:
                rt = await started(stack, tmp_path, doc)
                answer = await ask(b.port, sub, holder_request, "card-2", run)
                assert (answer["status"], answer["value"]) == ("ok", HOLDER)
                assert sink_of(rt).status()["commands_done"] == ({"ok": 1} if run == 1 else {})
            state_files = [p for p in (tmp_path / "data").glob("state.db*") if p.is_file()]
            assert state_files
            assert [
                (p.name, m) for p in state_files for m in (HOLDER.encode(), digest) if m in p.read_bytes()
            ] == []
        first, again = answers_to(sub, "card-2")
        assert again == first


async def test_kept_requests_leave_once_past_the_window_without_a_next_request(
    tmp_path: Path, broker
) -> None:  # type: ignore[no-untyped-def]
    b = broker()
    doc = site(tmp_path, b.port, None, ttl="1s")
    async with Subscriber(b.port, RESPONSES) as sub, AsyncExitStack() as stack:
        rt = await started(stack, tmp_path, doc)
        answer = await ask(b.port, sub, request("card-3", POINT, HOLDER), "card-3", 1)
        assert answer["status"] == "ok"
        assert (SINK, "card-3") in kept_rows(rt)
        # no other request comes: the row goes on its own once 2 x command_ttl has passed
        await until(lambda: kept_rows(rt) == [], 20, what="the kept request deleted past its window")


async def test_requests_a_stopped_gateway_left_are_deleted_at_start(tmp_path: Path, broker) -> None:  # type: ignore[no-untyped-def]
    """Rows past the window when the gateway starts (it was stopped when they passed it), and
    those of a sink no longer in the site file past the longest window any sink has, are deleted
    at start, before any request; a sink whose commands were turned off deletes all of its own."""
    b = broker()
    doc = site(tmp_path, b.port, None)
    async with Subscriber(b.port, RESPONSES) as sub, AsyncExitStack() as stack:
        rt = await started(stack, tmp_path, doc)
        await ask(b.port, sub, request("card-4", POINT, HOLDER), "card-4", 1)
    now = time.time()
    left = [
        (SINK, "old-1", now - 3600, b'{"value":"R-OLD"}'),  # past 2 x 5m
        ("mqtt:gone", "old-2", now - 3 * 3600, b'{"value":"R-GONE"}'),  # past 2 x 1h
    ]
    conn = sqlite3.connect(tmp_path / "data" / "state.db")
    with conn:
        conn.executemany("INSERT INTO mqtt_requests(sink, id, at, answer) VALUES (?, ?, ?, ?)", left)
    conn.close()
    async with running_site(tmp_path, doc, web=False) as rt:
        await until(
            lambda: kept_rows(rt) == [(SINK, "card-4")], 20, what="the rows past their window deleted"
        )
    # commands turned off: none of the sink's requests will be answered again
    doc["upstream"][0]["commands"] = False
    async with running_site(tmp_path, doc, web=False) as rt:
        assert kept_rows(rt) == []
