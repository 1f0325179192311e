"""Running the `edge` command as a real process, the way an operator or the service does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.waiting import until_async

ROOT = Path(__file__).resolve().parents[2]


def edge_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`edge ARGS...` from the project root; its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def start_edge_run(config: Path, log_path: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """`edge run -c CONFIG` as a process of its own, its output in `log_path`; the caller stops it
    (tests/support/procs.stop_process)."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "-c", str(config)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            **popen,
        )


async def answering(base: str, edge: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until the `edge run` process at `base` answers /healthz (or has exited: the caller
    then fails with its log)."""
    async with aiohttp.ClientSession() as http:

        async def up() -> bool:
            try:
                async with http.get(base + "/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return edge.poll() is not None

        await until_async(up, timeout=timeout, what="edge run answering /healthz")
