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


def terminate(proc: subprocess.Popen[Any], timeout: float = 30) -> Any:
    """Stop `proc` the way systemd stops the service: SIGTERM, then SIGKILL when it has not exited
    within `timeout` seconds (its return code then says so, and its output is still returned).
    Returns what it wrote to a piped stdout (None when its output went elsewhere)."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out
