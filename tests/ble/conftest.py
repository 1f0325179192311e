"""Fixtures of the BLE tests: a mock BlueZ on a private system bus that bleak connects to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.ble.bluez import MockBluez


@pytest.fixture
async def bluez(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MockBluez]:
    mock = MockBluez(tmp_path)
    # before bleak's BlueZ manager connects (it does so on the first scan of this event loop)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", mock.address)
    try:
        await mock.start()
        yield mock
    finally:
        await mock.stop()
