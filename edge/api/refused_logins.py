"""Logins refused before any password check, counted and written to the audit log as one entry
per source and minute (`RefusedLogins`), so a flood from one address cannot fill the disk through
the audit log; the account routes note each refusal here and run its writer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge import audit
from edge.api import accounts as acc

if TYPE_CHECKING:
    from edge.state import StateDB

log = logging.getLogger("edge.api.accounts")


#: a source's logins refused without a password check are written as one entry per this many seconds
REFUSAL_WINDOW = 60.0
#: sources with a window open at once; the refusals of any further source are counted together
REFUSAL_SOURCES = 1000
REFUSAL_NAMES = 3  # the first distinct names a window's entry quotes


@dataclass
class RefusalWindow:
    """The refused logins of one source (or, as "*", of the sources past REFUSAL_SOURCES) since
    `first`; its entry is written once `due` (monotonic) has passed."""

    due: float
    first: float
    last: float = 0.0
    count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    names: list[str] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)


class RefusedLogins:
    """Logins refused before any password was checked by the per-source limit, or because an
    attempt at the same name is being checked: counted, and written to the audit log as one
    `login_refused` entry per source and REFUSAL_WINDOW, never one each, so a flood from one
    address cannot fill the disk through the audit log and still shows in it. A wrong password
    and a slowed name's wait stay one `login_failed` entry each (at most IP_MAX_ATTEMPTS a minute
    per source). Every refusal is counted in `total`/`by_reason` (wrong passwords too) for as
    long as the gateway runs; a window still open when the gateway stops is written then."""

    def __init__(self, state: StateDB, window: float = REFUSAL_WINDOW) -> None:
        self.state = state
        self.window = window
        self.by_reason: Counter[str] = Counter()
        self.open: dict[str, RefusalWindow] = {}
        self.closed: list[tuple[str, RefusalWindow]] = []
        self.wake = asyncio.Event()
        self.log_lock = threading.Lock()  # written from the writer's thread and at stop
        self.unlogged = [0, 0]  # refusals and sources written since the last log line
        self.logged = -math.inf

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def note(self, address: str, name: str, exc: acc.LoginRefused) -> None:
        """Count one refusal; one not audited on its own goes into its source's window."""
        self.by_reason[exc.reason] += 1
        if exc.audited_each:
            return
        source = acc.source_of(address)
        key = source if source in self.open or len(self.open) < REFUSAL_SOURCES else "*"
        now = time.monotonic()
        win = self.open.get(key)
        if win is not None and now >= win.due:
            self.closed.append((key, self.open.pop(key)))
            win = None
        if win is None:
            win = self.open[key] = RefusalWindow(now + self.window, time.time())
            self.wake.set()  # the writer's next deadline may be this one
        win.count += 1
        win.last = time.time()
        win.reasons[exc.reason] += 1
        if len(win.sources) < acc.MAX_SOURCES:  # "*" counts distinct sources up to this many
            win.sources.add(source)
        if name[:64] not in win.names and len(win.names) < REFUSAL_NAMES:
            win.names.append(name[:64])

    def _take(self, everything: bool) -> list[tuple[str, RefusalWindow]]:
        now = time.monotonic()
        due = [key for key, win in self.open.items() if everything or now >= win.due]
        taken, self.closed = self.closed + [(key, self.open.pop(key)) for key in due], []
        return taken

    def _write(self, windows: list[tuple[str, RefusalWindow]], final: bool = False) -> None:
        for key, win in windows:
            detail: dict[str, Any] = {
                "count": win.count,
                "reasons": dict(win.reasons),
                "names": win.names,
                "first": win.first,
                "last": win.last,
            }
            if key == "*":
                detail["sources"] = len(win.sources)
            else:
                detail["address"] = key
            try:
                audit.record(self.state, "anonymous", "login_refused", key, **detail)
            except Exception as exc:  # the counts are not lost: they go to the log instead
                log.error("login refusals not audited (%s): %d from %s: %s", exc, win.count, key, detail)
        with self.log_lock:  # one line a minute at most, however many sources' windows close
            self.unlogged[0] += sum(win.count for _, win in windows)
            self.unlogged[1] += sum(len(win.sources) for _, win in windows)
            now = time.monotonic()
            if self.unlogged[0] and (final or now - self.logged >= REFUSAL_WINDOW):
                log.warning(
                    "%d logins refused without a password check (%d source windows); see the audit "
                    "log's login_refused entries",
                    *self.unlogged,
                )
                self.unlogged, self.logged = [0, 0], now

    async def run(self) -> None:
        """Write each window's entry when it closes, until cancelled."""
        while True:
            self.wake.clear()
            deadline = min((win.due for win in self.open.values()), default=None)
            try:
                async with asyncio.timeout(
                    None if deadline is None else max(0.0, deadline - time.monotonic())
                ):
                    await self.wake.wait()
            except TimeoutError:
                pass
            windows = self._take(everything=False)
            if windows:
                await asyncio.to_thread(self._write, windows)

    def flush(self) -> None:
        """Write every window now, closed or not (the gateway stops)."""
        self._write(self._take(everything=True), final=True)
