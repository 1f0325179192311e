"""A PEP 517 build backend in the standard library alone, for this example package.

It reads `[project]` of pyproject.toml (name, version, description, requires-python, dependencies,
entry points) and packs every package directory beside it into a py3-none-any wheel, so the
package installs offline with any pip: setuptools 65 (what Python 3.11's venv brings) cannot build
a wheel without the `wheel` distribution, and --no-index cannot fetch one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _project() -> dict[str, Any]:
    with open(HERE / "pyproject.toml", "rb") as f:
        return dict(tomllib.load(f)["project"])


def _names(project: dict[str, Any]) -> tuple[str, str]:
    """The distribution's file-name form (PEP 427: runs of -_. as one _) and its version."""
    return re.sub(r"[-_.]+", "_", project["name"]).lower(), str(project["version"])


def _metadata(project: dict[str, Any]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}"]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def _entry_points(project: dict[str, Any]) -> str:
    groups: dict[str, dict[str, str]] = dict(project.get("entry-points", {}))
    if project.get("scripts"):
        groups["console_scripts"] = project["scripts"]
    return "".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
        for group, entries in groups.items()
    )


def _package_files() -> list[Path]:
    """Every file of every package directory beside pyproject.toml, bytecode left out."""
    out: list[Path] = []
    for init in sorted(HERE.glob("*/__init__.py")):
        out += [
            p
            for p in sorted(init.parent.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    return out


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: dict[str, Any] | None = None) -> list[str]:
    return []


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    project = _project()
    dist, version = _names(project)
    info = f"{dist}-{version}.dist-info"
    files: list[tuple[str, bytes]] = [
        (p.relative_to(HERE).as_posix(), p.read_bytes()) for p in _package_files()
    ]
    files += [
        (f"{info}/METADATA", _metadata(project).encode()),
        (f"{info}/entry_points.txt", _entry_points(project).encode()),
        (
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: build_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ]
    record = "\n".join([*(_record_line(n, d) for n, d in files), f"{info}/RECORD,,"]) + "\n"
    wheel_name = f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / wheel_name, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [*files, (f"{info}/RECORD", record.encode())]:
            zf.writestr(name, data)
    return wheel_name


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    dist, version = _names(_project())
    root = f"{dist}-{version}"
    sources = [HERE / "pyproject.toml", HERE / "build_backend.py", HERE / "README.md", *_package_files()]
    name = f"{root}.tar.gz"
    with tarfile.open(Path(sdist_directory) / name, "w:gz") as tf:
        for path in sources:
            tf.add(path, arcname=f"{root}/{path.relative_to(HERE).as_posix()}")
        pkg_info = _metadata(_project()).encode()
        entry = tarfile.TarInfo(f"{root}/PKG-INFO")
        entry.size = len(pkg_info)
        tf.addfile(entry, io.BytesIO(pkg_info))
    return name
