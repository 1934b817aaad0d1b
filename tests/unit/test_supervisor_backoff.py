"""The restart backoff policy, driven by a fake clock: no sleeping."""

from __future__ import annotations

import pytest

from mainspring.runtime import ChildSpec, RestartBackoff, Supervisor


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def crash_after(backoff: RestartBackoff, clock: FakeClock, uptime: float) -> float:
    """Start, stay up ``uptime`` seconds, crash; return the delay before the next start."""
    backoff.started()
    clock.advance(uptime)
    delay = backoff.next_delay()
    clock.advance(delay)
    return delay


def test_crash_loop_doubles_the_delay_up_to_the_cap() -> None:
    clock = FakeClock()
    backoff = RestartBackoff(clock=clock)
    delays = [crash_after(backoff, clock, uptime=0.5) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_delay_resets_once_a_child_stayed_up_sixty_seconds() -> None:
    clock = FakeClock()
    backoff = RestartBackoff(clock=clock)
    assert [crash_after(backoff, clock, uptime=1) for _ in range(4)] == [1, 2, 4, 8]
    assert crash_after(backoff, clock, uptime=60) == 1
    assert crash_after(backoff, clock, uptime=1) == 2


def test_a_short_run_does_not_reset_the_delay() -> None:
    clock = FakeClock()
    backoff = RestartBackoff(clock=clock)
    assert [crash_after(backoff, clock, uptime=59.9) for _ in range(3)] == [1, 2, 4]


def test_failed_start_counts_as_a_crash_without_resetting() -> None:
    clock = FakeClock()
    backoff = RestartBackoff(clock=clock)
    crash_after(backoff, clock, uptime=1)
    clock.advance(120)  # long wait while the start itself keeps failing: no uptime
    assert backoff.next_delay() == 2


def test_custom_policy_and_long_crash_loop_stay_capped() -> None:
    clock = FakeClock()
    backoff = RestartBackoff(initial=0.25, cap=1.0, stable_after=5.0, clock=clock)
    delays = [crash_after(backoff, clock, uptime=0) for _ in range(2000)]
    assert delays[:4] == [0.25, 0.5, 1.0, 1.0]
    assert max(delays) == 1.0
    assert crash_after(backoff, clock, uptime=5.0) == 0.25


@pytest.mark.parametrize(("initial", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 30.0)])
def test_nonsense_policy_is_rejected(initial: float, cap: float) -> None:
    with pytest.raises(ValueError, match="initial"):
        RestartBackoff(initial=initial, cap=cap)


def test_supervisor_rejects_duplicate_child_names() -> None:
    specs = [ChildSpec("web", ["true"]), ChildSpec("web", ["false"])]
    with pytest.raises(ValueError, match="unique"):
        Supervisor(specs)
