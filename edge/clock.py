"""Whether the gateway may believe its wall clock: the one place that says so for the whole project.

Records are stamped with `time.time()`, and retention and schedules act on it; a box that boots
without a real-time clock or before NTP answers stamps records with a wrong time, and a clock set
forward by hours would make retention delete what it must keep. This module owns three things:

- the kernel's NTP status, read through `adjtimex(2)` the way `timedatectl` does (its
  `NTPSynchronized`): synchronised when the kernel's maximum error is below its 16 s ceiling;
- steps of the wall clock against the monotonic clock (`ClockWatch`, `forward_jump`), the only
  way to see a clock that was set by hand or by an NTP daemon between two looks;
- the site's policy (`ClockConfig`, the site file's `clock:`) and the resulting trust
  (`ClockTrust`), whose transitions come back as `clock_untrusted` / `clock_synced` /
  `clock_stepped` events for the caller to journal.

Every source of time is injectable, so tests and sites can drive it without touching the system
clock.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import Field

from edge.model import Event, Severity
from edge.units import Duration
from edge.validation import Strict

#: adjtimex's answer when the kernel considers its clock unsynchronised (STA_UNSYNC and friends)
TIME_ERROR = 5
#: status bit: the clock is not synchronised to a reference
STA_UNSYNC = 0x0040
#: status bit: `time`'s sub-second field holds nanoseconds, not microseconds
STA_NANO = 0x2000
#: the kernel's ceiling of `maxerror` (NTP_PHASE_LIMIT, µs): it sits there on a clock nobody
#: disciplines, and systemd's timedated reports NTPSynchronized=no from there on
MAXERROR_LIMIT_US = 16_000_000
#: the fastest the kernel slews a clock (MAXFREQ, 500 ppm): an NTP daemon may legitimately move the
#: wall clock this much against the monotonic one without stepping it
SLEW_RATE = 0.0005


# ---------------------------------------------------------------- the kernel's NTP status
@dataclass(frozen=True, slots=True)
class SyncStatus:
    """What a sync source says: is the clock synchronised, and the evidence, for people."""

    synchronised: bool
    detail: str


SyncSource = Callable[[], SyncStatus]


@dataclass(frozen=True, slots=True)
class KernelClock:
    """The fields of one `adjtimex(2)` read that decide synchronisation."""

    state: int  # adjtimex's return: TIME_OK (0) … TIME_ERROR (5)
    status: int  # STA_* bits
    maxerror_us: int
    esterror_us: int
    time: float = 0.0  # the kernel's wall clock at the read (UTC epoch seconds)

    @property
    def synchronised(self) -> bool:
        # timedated's rule, not STA_UNSYNC alone: chrony without `rtcsync` keeps STA_UNSYNC set on a
        # disciplined clock so that the kernel leaves the RTC alone. On a clock nobody disciplines
        # the kernel raises maxerror to its ceiling and then also sets STA_UNSYNC and answers
        # TIME_ERROR, so the field cases (no NTP daemon, no network yet) agree either way.
        return self.maxerror_us < MAXERROR_LIMIT_US

    def sync_status(self) -> SyncStatus:
        flags = ["STA_UNSYNC"] if self.status & STA_UNSYNC else []
        if self.state == TIME_ERROR:
            flags.append("TIME_ERROR")
        detail = f"adjtimex: maxerror {self.maxerror_us / 1e6:g} s, esterror {self.esterror_us / 1e6:g} s"
        if flags:
            detail += ", " + ", ".join(flags)
        return SyncStatus(self.synchronised, detail)


@functools.cache
def _adjtimex() -> tuple[Any, Any]:
    """adjtimex from the C library and its `struct timex`, looked up at the first read and kept:
    ctypes is loaded only by a process that reads the clock, and `find_library` (which runs
    ldconfig in a child process) runs once, not at every check. OSError when it is not there."""
    import ctypes
    import ctypes.util

    class _Timeval(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]

    class _Timex(ctypes.Structure):
        # <sys/timex.h> on Linux/glibc: `long` fields, natural alignment, 11 reserved ints at the end
        _fields_ = [
            ("modes", ctypes.c_uint),
            ("offset", ctypes.c_long),
            ("freq", ctypes.c_long),
            ("maxerror", ctypes.c_long),
            ("esterror", ctypes.c_long),
            ("status", ctypes.c_int),
            ("constant", ctypes.c_long),
            ("precision", ctypes.c_long),
            ("tolerance", ctypes.c_long),
            ("time", _Timeval),
            ("tick", ctypes.c_long),
            ("ppsfreq", ctypes.c_long),
            ("jitter", ctypes.c_long),
            ("shift", ctypes.c_int),
            ("stabil", ctypes.c_long),
            ("jitcnt", ctypes.c_long),
            ("calcnt", ctypes.c_long),
            ("errcnt", ctypes.c_long),
            ("stbcnt", ctypes.c_long),
            ("tai", ctypes.c_int),
            ("reserved", ctypes.c_int * 11),
        ]

    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError) as exc:
        raise OSError(f"adjtimex is not available in the C library ({libc_name}): {exc}") from None
    adjtimex.argtypes = [ctypes.POINTER(_Timex)]
    adjtimex.restype = ctypes.c_int
    return adjtimex, _Timex


def read_kernel_clock() -> KernelClock:
    """One read-only `adjtimex(2)` call (modes 0: needs no privilege, changes nothing).
    OSError when the C library has no adjtimex (not Linux) or the call fails."""
    import ctypes

    adjtimex, timex = _adjtimex()
    tx = timex()
    state = adjtimex(ctypes.byref(tx))
    if state < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"adjtimex failed: {os.strerror(errno)}")
    fraction = tx.time.tv_usec / (1e9 if tx.status & STA_NANO else 1e6)
    return KernelClock(state, tx.status, tx.maxerror, tx.esterror, tx.time.tv_sec + fraction)


def kernel_sync_status() -> SyncStatus:
    """The default sync source: the kernel's NTP status; unreadable counts as unsynchronised."""
    try:
        return read_kernel_clock().sync_status()
    except OSError as exc:
        return SyncStatus(False, str(exc))


def boottime() -> float:
    """Seconds on a clock that never steps and keeps counting through a suspend (CLOCK_BOOTTIME
    where there is one): a suspended box would otherwise look like a wall clock jumping forward."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clock) if clock is not None else time.monotonic()


# ---------------------------------------------------------------- steps of the wall clock
class ClockSample(NamedTuple):
    """The wall clock (UTC epoch seconds) and a monotonic clock (seconds), read together."""

    wall: float
    mono: float

    @classmethod
    def now(cls) -> ClockSample:
        return cls(time.time(), boottime())


@dataclass(frozen=True, slots=True)
class ClockStep:
    """How far the wall clock moved against the monotonic clock between two samples."""

    step: float  # wall advance minus monotonic advance, in seconds: > 0 forward, < 0 back
    wall_elapsed: float
    mono_elapsed: float

    def describe(self) -> str:
        if self.mono_elapsed < 0:
            return (
                "the monotonic clock went back: the two samples come from different boots, so how "
                "far the wall clock moved cannot be measured"
            )
        direction = "forward" if self.step > 0 else "back"
        return (
            f"the wall clock moved {abs(self.step):.3f} s {direction} against the monotonic clock "
            f"({self.wall_elapsed:+.3f} s on the wall clock in {self.mono_elapsed:.3f} s measured)"
        )


def step_between(last: ClockSample, now: ClockSample) -> ClockStep:
    wall_elapsed = now.wall - last.wall
    mono_elapsed = now.mono - last.mono
    return ClockStep(wall_elapsed - mono_elapsed, wall_elapsed, mono_elapsed)


def allowance(mono_elapsed: float, tolerance: float) -> float:
    """The largest step that is not a jump: the tolerance plus what slewing can add meanwhile."""
    return tolerance + SLEW_RATE * max(mono_elapsed, 0.0)


def forward_jump(last: ClockSample, now: ClockSample, tolerance: float = 2.0) -> ClockStep | None:
    """The guard of a forward-acting periodic job (retention, schedules): given the clocks at its
    last pass and now, the step when the wall clock advanced more than `tolerance` (plus slewing)
    beyond what the monotonic clock measured — the job then acts on nothing and says so — else
    None. A step back is not returned: it makes such a job do less, never more. Samples from
    different boots (the monotonic clock went back) count as a jump: there is nothing to measure
    against, so a job's first pass after a start has to rely on `ClockTrust` instead."""
    step = step_between(last, now)
    if step.mono_elapsed < 0 or step.step > allowance(step.mono_elapsed, tolerance):
        return step
    return None


class ClockWatch:
    """Fed (wall, monotonic) samples, it reports each step beyond the tolerance in either
    direction, measured against the previous sample."""

    def __init__(self, tolerance: float = 2.0) -> None:
        self.tolerance = tolerance
        self.last: ClockSample | None = None

    @property
    def offset(self) -> float | None:
        """Wall minus monotonic time at the last sample: constant while nobody sets the clock."""
        return None if self.last is None else self.last.wall - self.last.mono

    def observe(self, sample: ClockSample) -> ClockStep | None:
        last, self.last = self.last, sample
        if last is None:
            return None
        step = step_between(last, sample)
        if step.mono_elapsed < 0 or abs(step.step) > allowance(step.mono_elapsed, self.tolerance):
            return step
        return None


# ---------------------------------------------------------------- the site's policy and the trust
class ClockConfig(Strict):
    """The site file's `clock:` section."""

    #: a lab box, or a gateway with a battery-backed RTC, may be believed without NTP: then only a
    #: step of the clock while unsynchronised makes it untrusted (until the kernel syncs)
    trust_unsynced: bool = False
    #: a step of the wall clock against the monotonic clock larger than this (plus what slewing
    #: can add) is a jump
    max_step: Duration = Field(default=2.0, gt=0)


class ClockTrust:
    """Trusted or not, and why. `check()` (or `observe()` with given readings) returns the events
    of a transition — the caller journals them:

    - `clock_untrusted` (warning) when the clock stops being trusted, or is not at the first check:
      `reason`, `synchronised`, `detail`, and `step_s` when a step caused it;
    - `clock_synced` (info) when trust comes back with the kernel's sync: `step_s`, how far the
      wall clock moved against the monotonic clock while untrusted (the error of the timestamps
      written meanwhile, as far as it was corrected by a step), and `untrusted_for_s`;
    - `clock_stepped` (warning) when a synchronised clock steps by more than `max_step` and stays
      synchronised (the NTP daemon corrected it): trust is kept, the step is on record.
    """

    def __init__(
        self,
        config: ClockConfig,
        source: str,
        sync: SyncSource = kernel_sync_status,
        clock: Callable[[], ClockSample] = ClockSample.now,
    ) -> None:
        self.config = config
        self.source = source  # the events' source: the site id
        self._sync = sync
        self._clock = clock
        self._watch = ClockWatch(config.max_step)
        self.trusted: bool | None = None  # None until the first check
        self.reason = "not checked yet"
        self.synchronised: bool | None = None
        self.last_step: ClockStep | None = None
        self.since: float | None = None  # wall time of the last transition
        self._stepped_unsynced: ClockStep | None = None
        self._untrusted_at: ClockSample | None = None
        self._checked: ClockSample | None = None

    def check(self) -> list[Event]:
        return self.observe(self._clock(), self._sync())

    def observe(self, sample: ClockSample, sync: SyncStatus) -> list[Event]:
        events: list[Event] = []
        step = self._watch.observe(sample)
        was_synced = self.synchronised
        self.synchronised = sync.synchronised
        if step is not None:
            self.last_step = step
            if not sync.synchronised:
                self._stepped_unsynced = step
            elif was_synced:
                events.append(
                    Event(
                        "clock_stepped",
                        self.source,
                        Severity.WARNING,
                        {"step_s": round(step.step, 6), "reason": step.describe(), "detail": sync.detail},
                        sample.wall,
                    )
                )
        if sync.synchronised:
            self._stepped_unsynced = None

        if sync.synchronised:
            trusted, reason = True, f"the kernel clock is synchronised ({sync.detail})"
        elif self._stepped_unsynced is not None:
            trusted = False
            reason = f"{self._stepped_unsynced.describe()} while not synchronised ({sync.detail})"
        elif self.config.trust_unsynced:
            trusted = True
            reason = f"not synchronised, trusted as the site says (clock.trust_unsynced; {sync.detail})"
        else:
            trusted, reason = False, f"the kernel clock is not synchronised ({sync.detail})"

        if trusted is False and self.trusted is not False:
            payload: dict[str, Any] = {
                "reason": reason,
                "synchronised": sync.synchronised,
                "detail": sync.detail,
            }
            if self._stepped_unsynced is not None:
                payload["step_s"] = round(self._stepped_unsynced.step, 6)
            events.append(Event("clock_untrusted", self.source, Severity.WARNING, payload, sample.wall))
            self._untrusted_at = sample
            self.since = sample.wall
        elif trusted and self.trusted is False:
            assert self._untrusted_at is not None
            before = self._untrusted_at
            payload = {
                "step_s": round((sample.wall - sample.mono) - (before.wall - before.mono), 6),
                "untrusted_for_s": round(sample.mono - before.mono, 3),
                "reason": reason,
                "detail": sync.detail,
            }
            events.append(Event("clock_synced", self.source, Severity.INFO, payload, sample.wall))
            self._untrusted_at = None
            self.since = sample.wall
        elif self.trusted is None:
            self.since = sample.wall
        self.trusted, self.reason = trusted, reason
        self._checked = sample
        return events

    @property
    def last_sample(self) -> ClockSample | None:
        """The clocks at the last completed check: a job that saw a jump believes only a later
        check. Set after `trusted`, so a thread that reads this first, then `trusted`, never
        pairs a new check with the trust from before it."""
        return self._checked

    def snapshot(self) -> dict[str, Any]:
        """For status, metrics and the UI overview."""
        return {
            "trusted": self.trusted,
            "reason": self.reason,
            "synchronised": self.synchronised,
            "since": self.since,
            "last_step_s": None if self.last_step is None else round(self.last_step.step, 6),
        }
