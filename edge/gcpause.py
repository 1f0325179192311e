"""A counted pause of the cyclic garbage collector, for work that builds many tracked objects at
once (a large YAML document's node graph, a pull page's rows): full collections during such work
slow it down several times and hold the GIL, stalling the event loop. Counted, because pauses in
two threads may overlap: the collector comes back when the last one ends, as it was before."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_pausers = 0
_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    global _pausers, _was_enabled
    with _lock:
        if _pausers == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield
    finally:
        with _lock:
            _pausers -= 1
            if _pausers == 0 and _was_enabled:
                gc.enable()
