"""Shared by the plugin tests: the environment of an `edge` process with more on its path or with
modules made absent, and the line of a key in a site file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

WITHOUT_DIR = Path(__file__).resolve().parent / "without"


def python_env(*path: str | Path, without: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment with `path` first on PYTHONPATH and, for `without`, the modules
    named made absent in the child (see without/sitecustomize.py)."""
    entries = [str(p) for p in path]
    if without:
        entries.append(str(WITHOUT_DIR))
    if os.environ.get("PYTHONPATH"):
        entries.append(os.environ["PYTHONPATH"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(entries)}
    env.pop("EDGE_TEST_WITHOUT", None)
    if without:
        env["EDGE_TEST_WITHOUT"] = ",".join(without)
    return env


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the first line of `path` that holds `text`."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{path} has no line with {text!r}")
