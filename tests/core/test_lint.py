"""The tree stays ruff-clean (config in pyproject.toml): a lint regression fails the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.fail("ruff is not installed in the virtualenv (it is in the test extras)")
    proc = subprocess.run(
        [ruff, "check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_python_is_ruff_formatted() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.fail("ruff is not installed in the virtualenv (it is in the test extras)")
    # Markdown is prose: its code blocks are examples laid out for reading, not for the formatter
    args = [ruff, "format", "--check", "--exclude", "*.md", "--output-format", "concise", "."]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, "run `ruff format` on:\n" + proc.stdout[-4000:] + proc.stderr[-2000:]
