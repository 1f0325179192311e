"""A port for a server a test starts later (a subprocess, a server restarted on the same port, an
address that must refuse connections first).

`bind(("127.0.0.1", 0))` hands out ports from the kernel's ephemeral range, the range every
outgoing connection takes its source port from: a port found free that way and bound only later
can be taken in between by any connection on the machine, including the test's own client
connecting to a port nobody listens on yet (a TCP self-connect). These ports come from below that
range, are checked free, and are never handed out twice in one test session.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_given: set[int] = set()
_rng = random.Random()  # seeded from the OS: two test runs on one machine pick differently


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free TCP port on 127.0.0.1 outside the ephemeral range, for binding later."""
    high = _ephemeral_low()
    low = max(1024, high - 12_000)
    for _ in range(500):
        port = _rng.randrange(low, high) if high - low >= 1000 else 0
        if port in _given:
            continue
        if port == 0:  # an unusual ip_local_port_range: take what the kernel gives
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
        elif not _bindable(port):
            continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {low}..{high - 1}")
