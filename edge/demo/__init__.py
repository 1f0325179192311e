"""`edge demo`: a simulated community site. Every site loads this package for its manifest
(`edge.demo.plugin`), so it holds no code: the site the demo writes is in `edge.demo.site`, its
command in `edge.demo.cli`, the kiosk's drivers in `edge.demo.kiosk`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any


def __getattr__(name: str) -> Any:
    """`from edge.demo import demo_site` and the like: the demo site's names, imported when asked."""
    # `from edge.demo import kiosk` asks this hook for a submodule before it imports it
    if name.startswith("__") or (Path(__file__).parent / f"{name}.py").exists():
        raise AttributeError(name)
    site = importlib.import_module("edge.demo.site")
    try:
        return getattr(site, name)
    except AttributeError:
        raise AttributeError(f"module 'edge.demo' has no attribute {name!r}") from None
