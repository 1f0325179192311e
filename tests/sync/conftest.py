from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.sync.helpers import Receiver


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Start receivers with `receiver(*args)`; each is stopped (by PID) when the test ends."""
    started: list[Receiver] = []

    def start(*args: str, port: int = 0) -> Receiver:
        r = Receiver(*args, port=port)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()
