"""The `command` event of a write is classed by what the caller says the value came from
(`Hub.write(..., privacy=)`), not by state the writing task carries: a rule's write of a value
computed from a blood pressure journals its command event as sensitive, and a write the device's
own writer issues meanwhile (another point, another source) keeps its point's class."""

from __future__ import annotations

import asyncio

from edge.hub import Hub
from edge.model import CommandResult, CommandStatus, Event, PointInfo, PointType, Privacy, Record, Value


def _commands(hub: Hub) -> list[Event]:
    seen: list[Event] = []

    def take(records: list[Record]) -> None:
        seen.extend(r for r in records if isinstance(r, Event) and r.kind == "command")

    hub.subscribe(take)
    return seen


async def test_a_write_carries_the_class_its_caller_gives_and_only_that_write() -> None:
    hub = Hub()
    hub.register_points(
        [
            PointInfo("gate-1.display", "gate-1", "display", PointType.STR, writable=True),
            PointInfo("gate-1.beep", "gate-1", "beep", PointType.BOOL, writable=True),
        ]
    )
    background: list[asyncio.Task[CommandResult]] = []

    async def writer(name: str, value: Value) -> CommandResult:
        if name == "display":  # the device's own follow-up, issued from within the rule's write
            background.append(asyncio.create_task(hub.write("gate-1.beep", True, source="driver:gate-1")))
        return CommandResult(f"gate-1.{name}", value, CommandStatus.OK)

    hub.register_writer("gate-1", writer)
    commands = _commands(hub)

    result = await hub.write("gate-1.display", "121/71", source="rule:bp-show", privacy=Privacy.SENSITIVE)
    assert result.ok
    await asyncio.wait_for(asyncio.gather(*background), timeout=10)
    plain = await hub.write("gate-1.display", "open", source="user:tech")

    by_source = {e.payload["by"]: e for e in commands}
    assert by_source["rule:bp-show"].payload["privacy"] == "sensitive"
    assert "privacy" not in by_source["driver:gate-1"].payload  # classed by its public point
    assert plain.ok and "privacy" not in by_source["user:tech"].payload


async def test_a_refused_write_quoting_its_value_carries_the_class_too() -> None:
    hub = Hub()
    hub.register_points([PointInfo("gate-1.count", "gate-1", "count", PointType.INT, writable=True)])

    async def writer(name: str, value: Value) -> CommandResult:
        return CommandResult(f"gate-1.{name}", value, CommandStatus.OK)

    hub.register_writer("gate-1", writer)
    commands = _commands(hub)

    result = await hub.write("gate-1.count", "121/71 r-0298", source="rule:bp", privacy=Privacy.PERSONAL)

    assert result.status == CommandStatus.REJECTED and "121/71" in result.reason
    (event,) = commands
    assert event.payload["privacy"] == "personal"
