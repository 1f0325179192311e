"""The one heap trimmer of the service (`edge.service.return_freed_memory`, called after start and
every TRIM_EVERY seconds) hands freed pages below the top of the heap back to the system, which
glibc keeps resident by itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# In a fresh interpreter, so that the heap holds what this script put there: 24 MiB in blocks of
# 64 KiB (below glibc's first mmap threshold: from the heap), all freed but the last, which keeps
# the top of the heap in use, so that glibc cannot give the rest back on its own.
SCRIPT = textwrap.dedent(
    """
    import sys
    from edge import service

    def rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    if service._libc() is None:
        print("NO-GLIBC")
        sys.exit(0)
    blocks = [bytearray(64 * 1024) for _ in range(384)]
    top = blocks.pop()
    del blocks
    before = rss()
    returned = service.return_freed_memory()
    print("RETURNED", returned, before - rss())
    """
)


def test_return_freed_memory_gives_freed_heap_pages_back() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("NO-GLIBC"):
        pytest.skip("malloc_trim is glibc's; elsewhere there is nothing to trim")
    _, returned, dropped = out.stdout.split()
    assert returned == "True"
    assert int(dropped) >= 16 * 2**20, f"RSS fell by {int(dropped) / 2**20:.1f} MiB of the 23.9 freed"
