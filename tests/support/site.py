"""Run a real site in-process for a test: real SQLite files in tmp_path, web on a free port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from edge.config import Site, load_site

# a health kiosk whose last systolic reading is sensitive: an item of a site file's `devices:`
KIOSK_DEVICE = """
  - id: kiosk-1
    driver: sim
    points:
      - {name: in_use, type: bool, signal: constant, value: false, interval: 1h}
      - {name: last_systolic, signal: constant, value: 120, interval: 1h, privacy: sensitive}
"""


def busy_meter() -> dict[str, Any]:
    """A sim device `meter` with ten random points, each read every 20 ms: a steady stream of
    records for the tests that kill and restart a gateway under load."""
    return {
        "id": "meter",
        "driver": "sim",
        "points": [
            {"name": f"p{i}", "signal": "random", "min": 0, "max": 100, "interval": "20ms"} for i in range(10)
        ],
    }


def site_file(tmp_path: Path, doc: dict[str, Any] | str, name: str = "site.yaml") -> Path:
    """Write a site file whose storage lives in tmp_path and whose web server takes a free port."""
    data = yaml.safe_load(doc) if isinstance(doc, str) else dict(doc)
    data.setdefault("site", {"id": "test-site", "name": "test"})
    # the build machines' kernel clock is unsynchronised (no NTP in the sandbox): a test site trusts
    # it like a lab box, so records do not carry clock_untrusted; the clock tests say otherwise
    data.setdefault("clock", {"trust_unsynced": True})
    storage = dict(data.get("storage") or {})
    storage.setdefault("path", str(tmp_path / "edge.db"))
    data["storage"] = storage
    web = dict(data.get("web") or {})
    web.setdefault("listen", "127.0.0.1:0")
    data["web"] = web
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def load(tmp_path: Path, doc: dict[str, Any] | str) -> Site:
    return load_site(site_file(tmp_path, doc))


@contextlib.asynccontextmanager
async def running_site(tmp_path: Path, doc: dict[str, Any] | str, *, web: bool = True) -> AsyncIterator[Any]:
    """Start a Runtime for the site; stops it (flushing the journal) on exit."""
    from edge.runtime import Runtime

    rt = Runtime(load(tmp_path, doc), with_web=web)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()
