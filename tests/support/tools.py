"""System tools for tests: a missing tool fails the test in CI (CI=true) and skips it elsewhere."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, hint: str = "") -> str:
    """Path of executable `name`; `make test` installs it (scripts/setup-system.sh)."""
    path = shutil.which(name)
    if path:
        return path
    msg = (
        f"system tool {name!r} is not installed"
        + (f" ({hint})" if hint else "")
        + "; `make test` installs it"
    )
    if in_ci():
        pytest.fail(msg)
    pytest.skip(msg)


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        msg = f"needs root: {why}"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)


def require_python_module(python: str, module: str, hint: str = "") -> str:
    """Path of interpreter `python` if it can import `module` (a system package, not the venv's)."""
    path = shutil.which(python)
    if path:
        import subprocess

        probe = subprocess.run([path, "-c", f"import {module}"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return path
    missing(f"python module {module!r} is not importable by {python}", hint)


def missing(what: str, hint: str = "") -> NoReturn:
    """Fail (CI) or skip (elsewhere) because `what` is not installed."""
    msg = what + (f" ({hint})" if hint else "") + "; `make test` installs it"
    if in_ci():
        pytest.fail(msg)
    pytest.skip(msg)


def require_gi_typelib(python: str, namespace: str, version: str, hint: str = "") -> str:
    """Path of interpreter `python` if PyGObject there can load typelib `namespace`-`version`."""
    path = require_python_module(python, "gi", hint)
    import subprocess

    code = f"import gi; gi.require_version({namespace!r}, {version!r}); from gi.repository import {namespace}"
    probe = subprocess.run([path, "-c", code], capture_output=True, timeout=30)
    if probe.returncode != 0:
        missing(f"GObject typelib {namespace}-{version} is not loadable by {python}", hint)
    return path
