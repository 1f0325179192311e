from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.sync.helpers import Receiver


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Start receivers with `receiver(*args)`; each is stopped (by PID) when the test ends."""
    started: list[Receiver] = []

    def start(*args: str, port: int = 0, client_ssl: Any = None) -> Receiver:
        r = Receiver(*args, port=port, client_ssl=client_ssl)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()
