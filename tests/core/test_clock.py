"""Clock trust (edge/clock.py): the kernel's NTP status read for real through adjtimex(2), and with
injected sources: untrusted while unsynchronised unless the site trusts such a clock, a later sync
reported with the step it measured, and the forward-jump guard of retention and schedules at its
tolerance's edges."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from pydantic import ValidationError

from edge.clock import (
    MAXERROR_LIMIT_US,
    SLEW_RATE,
    STA_UNSYNC,
    TIME_ERROR,
    ClockConfig,
    ClockSample,
    ClockTrust,
    ClockWatch,
    KernelClock,
    SyncStatus,
    forward_jump,
    kernel_sync_status,
    read_kernel_clock,
)
from edge.model import Severity

SYNCED = SyncStatus(True, "adjtimex: maxerror 0.05 s")
UNSYNCED = SyncStatus(False, "adjtimex: maxerror 16 s, STA_UNSYNC, TIME_ERROR")


# ---------------------------------------------------------------- the real kernel
def test_the_real_adjtimex_answers_a_boolean_from_a_coherent_read() -> None:
    kernel = read_kernel_clock()
    assert isinstance(kernel.synchronised, bool)
    # the structure was laid out right: the kernel's own time in it is now, to within a few seconds
    assert abs(kernel.time - time.time()) < 5
    if not kernel.synchronised:  # like this build machine: the kernel says so in every field
        assert kernel.maxerror_us >= MAXERROR_LIMIT_US
        assert kernel.status & STA_UNSYNC and kernel.state == TIME_ERROR
    status = kernel_sync_status()
    assert status.synchronised is kernel.synchronised
    assert status.detail.startswith("adjtimex: maxerror")


def test_the_real_adjtimex_agrees_with_timedatectl() -> None:
    exe = shutil.which("timedatectl")
    if exe is None:
        pytest.skip("timedatectl is not installed here: nothing to compare adjtimex with")
    done = subprocess.run(
        [exe, "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=30
    )
    answer = done.stdout.strip()
    if done.returncode != 0 or answer not in ("yes", "no"):
        pytest.skip(f"timedatectl cannot answer here (no systemd-timedated): {done.stderr.strip()[:200]}")
    assert read_kernel_clock().synchronised is (answer == "yes")


def test_the_real_clock_gives_trust_and_an_event_that_say_the_same() -> None:
    trust = ClockTrust(ClockConfig(), "site-a")
    events = trust.check()
    if kernel_sync_status().synchronised:
        assert trust.trusted is True and events == []
    else:  # no NTP in the sandbox: untrusted at once, said in one event naming the kernel's evidence
        assert trust.trusted is False
        assert [e.kind for e in events] == ["clock_untrusted"]
        assert "not synchronised" in events[0].payload["reason"]
        assert "maxerror 16 s" in events[0].payload["detail"]
    assert trust.check() == []  # no transition, no event


def test_kernel_readings_follow_timedated_rule() -> None:
    field_box = KernelClock(TIME_ERROR, STA_UNSYNC | 0x2000, MAXERROR_LIMIT_US, MAXERROR_LIMIT_US)
    assert not field_box.synchronised
    assert field_box.sync_status().detail == "adjtimex: maxerror 16 s, esterror 16 s, STA_UNSYNC, TIME_ERROR"
    assert KernelClock(0, 0x2001, 50_000, 1_000).synchronised
    # chrony without rtcsync keeps STA_UNSYNC on a disciplined clock; timedatectl says yes, so do we
    assert KernelClock(TIME_ERROR, STA_UNSYNC, 3_000, 100).synchronised
    assert not KernelClock(0, 0, MAXERROR_LIMIT_US, 0).synchronised


# ---------------------------------------------------------------- trust with injected sources
class FakeClocks:
    """A wall and a monotonic clock the test moves, and a sync source it flips."""

    def __init__(self, wall: float = 1_000_000.0, mono: float = 100.0) -> None:
        self.wall, self.mono, self.sync = wall, mono, UNSYNCED

    def sample(self) -> ClockSample:
        return ClockSample(self.wall, self.mono)

    def tick(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def trust(self, **config: object) -> ClockTrust:
        return ClockTrust(ClockConfig.model_validate(config), "site-a", lambda: self.sync, self.sample)


def test_an_unsynchronised_clock_is_untrusted_until_it_syncs_and_the_sync_carries_the_step() -> None:
    clocks = FakeClocks()
    trust = clocks.trust()
    [untrusted] = trust.check()
    assert (untrusted.kind, untrusted.source, untrusted.severity) == (
        "clock_untrusted",
        "site-a",
        Severity.WARNING,
    )
    assert untrusted.ts == clocks.wall
    assert untrusted.payload["synchronised"] is False and "step_s" not in untrusted.payload
    assert trust.trusted is False and "not synchronised" in trust.reason

    clocks.tick(30)
    assert trust.check() == [] and trust.trusted is False  # still unsynced: nothing new to say

    # NTP answers: it steps the wall clock 1 h 2.5 s forward and the kernel reports the sync
    clocks.tick(10)
    clocks.wall += 3602.5
    clocks.sync = SYNCED
    [synced] = trust.check()
    assert (synced.kind, synced.severity) == ("clock_synced", Severity.INFO)
    assert synced.payload["step_s"] == 3602.5
    assert synced.payload["untrusted_for_s"] == 40.0
    assert synced.ts == clocks.wall
    assert trust.trusted is True and "synchronised" in trust.reason
    assert trust.snapshot() == {
        "trusted": True,
        "reason": trust.reason,
        "synchronised": True,
        "since": clocks.wall,
        "last_step_s": 3602.5,
    }


def test_a_site_may_trust_an_unsynchronised_clock_until_it_steps() -> None:
    clocks = FakeClocks()
    trust = clocks.trust(trust_unsynced=True)
    assert trust.check() == [] and trust.trusted is True
    assert "clock.trust_unsynced" in trust.reason
    clocks.tick(60)
    assert trust.check() == []

    clocks.tick(5)
    clocks.wall -= 7200  # someone sets the clock back two hours by hand
    [untrusted] = trust.check()
    assert untrusted.kind == "clock_untrusted" and untrusted.payload["step_s"] == -7200.0
    assert trust.trusted is False and "7200.000 s back" in trust.reason
    clocks.tick(60)
    assert trust.check() == [] and trust.trusted is False  # stays untrusted without a sync

    clocks.sync = SYNCED
    [synced] = trust.check()
    assert synced.kind == "clock_synced" and synced.payload["step_s"] == 0.0


def test_a_step_of_a_synchronised_clock_is_reported_and_keeps_the_trust() -> None:
    clocks = FakeClocks()
    clocks.sync = SYNCED
    trust = clocks.trust()
    assert trust.check() == [] and trust.trusted is True
    clocks.tick(10)
    clocks.wall += 3.0  # the NTP daemon steps a synchronised clock by 3 s
    [stepped] = trust.check()
    assert (stepped.kind, stepped.payload["step_s"]) == ("clock_stepped", 3.0)
    assert trust.trusted is True


def test_a_hand_set_clock_loses_the_sync_and_the_trust() -> None:
    clocks = FakeClocks()
    clocks.sync = SYNCED
    trust = clocks.trust()
    trust.check()
    clocks.tick(10)
    clocks.wall += 86400  # `date -s` also clears the kernel's sync status
    clocks.sync = UNSYNCED
    [untrusted] = trust.check()
    assert untrusted.kind == "clock_untrusted"
    assert untrusted.payload["step_s"] == 86400.0 and untrusted.payload["synchronised"] is False


def test_the_trust_policy_refuses_a_step_tolerance_that_is_not_a_positive_duration() -> None:
    assert ClockConfig.model_validate({"max_step": "500ms"}).max_step == 0.5
    for bad in ("0s", "soon", -1):
        with pytest.raises(ValidationError) as info:
            ClockConfig.model_validate({"max_step": bad})
        assert info.value.errors()[0]["loc"] == ("max_step",)
    with pytest.raises(ValidationError, match="trust_unsyncd"):
        ClockConfig.model_validate({"trust_unsyncd": True})


# ---------------------------------------------------------------- steps and the forward-jump guard
def test_a_forward_jump_is_detected_and_a_normal_advance_is_not() -> None:
    last = ClockSample(1_000_000.0, 500.0)
    assert forward_jump(last, ClockSample(1_003_600.0, 4100.0)) is None  # an hour, measured as such
    jump = forward_jump(last, ClockSample(1_000_000.0 + 40 * 86400, 4100.0))
    assert jump is not None
    assert (jump.step, jump.wall_elapsed, jump.mono_elapsed) == (40 * 86400 - 3600, 40 * 86400, 3600)
    assert "forward against the monotonic clock" in jump.describe()
    # the clock going back makes a forward-acting job do less: not its guard's concern
    assert forward_jump(last, ClockSample(1_000_000.0 - 86400, 4100.0)) is None


def test_the_forward_guard_allows_its_tolerance_plus_slewing_and_no_more() -> None:
    last = ClockSample(1_000_000.0, 0.0)
    elapsed = 10_000.0  # slewing may add 5 s over this time
    limit = 2.0 + SLEW_RATE * elapsed
    assert forward_jump(last, ClockSample(1_000_000.0 + elapsed + limit, elapsed), tolerance=2.0) is None
    beyond = forward_jump(last, ClockSample(1_000_000.0 + elapsed + limit + 0.01, elapsed), tolerance=2.0)
    assert beyond is not None and beyond.step == pytest.approx(limit + 0.01)
    # a tighter tolerance catches what the default lets through
    assert forward_jump(last, ClockSample(1_000_000.0 + elapsed + 5.5, elapsed), tolerance=0.1) is not None


def test_samples_from_another_boot_are_a_jump_for_the_guard() -> None:
    jump = forward_jump(ClockSample(1_000_000.0, 9_000.0), ClockSample(1_000_100.0, 50.0))
    assert jump is not None and "different boots" in jump.describe()


def test_the_watch_reports_steps_either_way_beyond_its_tolerance() -> None:
    watch = ClockWatch(tolerance=2.0)
    assert watch.observe(ClockSample(1000.0, 10.0)) is None and watch.offset == 990.0
    assert watch.observe(ClockSample(1002.0, 10.0)) is None  # exactly the tolerance: not a step
    step = watch.observe(ClockSample(1004.5, 10.0))
    assert step is not None and step.step == 2.5
    back = watch.observe(ClockSample(1000.0, 11.0))
    assert back is not None and back.step == -5.5 and "back" in back.describe()
    assert watch.offset == 989.0
