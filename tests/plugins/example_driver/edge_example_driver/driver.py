"""`driver: example`: every `interval_ms` one reading of each point, a counter going up by `step`
from `start`. The count lives in memory, so a restarted driver starts again from `start`."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

from pydantic import Field

from edge.driver import BaseDriver, DeviceConfig, DriverContext, PointConfig
from edge.model import (
    CommandResult,
    CommandStatus,
    HealthState,
    PointInfo,
    PointType,
    Reading,
    Value,
    point_id,
)


class CounterPoint(PointConfig):
    type: PointType = PointType.INT
    start: int = 0
    step: int = 1


class ExampleDevice(DeviceConfig):
    driver: Literal["example"] = "example"
    interval_ms: int = Field(1000, ge=10, le=3_600_000)
    points: list[CounterPoint] = Field(min_length=1)


class ExampleDriver(BaseDriver):
    config_model = ExampleDevice

    def __init__(self, device: ExampleDevice, ctx: DriverContext) -> None:
        super().__init__(device, ctx)
        self.cfg = device
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    def points(self) -> list[PointInfo]:
        return self.cfg.point_infos()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._count(), name=f"example:{self.id}")
        self.set_health(HealthState.ONLINE)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.end_stream()

    async def _count(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.cfg.interval_ms / 1000
        next_at = loop.time()
        while True:
            now = self.ctx.clock()
            self.emit(
                [
                    Reading(now, point_id(self.id, p.name), p.start + p.step * self.samples)
                    for p in self.cfg.points
                ]
            )
            self.samples += 1
            self.health.last_ok = now
            # a fixed schedule, not a fixed pause: the interval holds however long emit took
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def write(self, point: str, value: Value) -> CommandResult:
        return CommandResult(
            point_id(self.id, point),
            value,
            CommandStatus.REJECTED,
            "the example driver has no writable points",
        )
