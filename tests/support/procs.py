"""Stopping the processes tests start (servers, stream sources), by their own PID."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any] | None) -> None:
    """SIGKILL `proc` if it still runs, and reap it (a killed device or stream source)."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
