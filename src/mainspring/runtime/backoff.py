"""When to restart a crashed child: exponential backoff that forgives a child once it is stable.

Pure logic with an injected clock, so the policy is tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds on a monotonic scale; ``time.monotonic`` in production, a fake in tests."""


class RestartBackoff:
    """Delays of ``initial``, doubling up to ``cap``; back to ``initial`` after a stable run.

    A child that crash-loops must not spin the CPU or flood the log, yet one that ran fine for
    ``stable_after`` seconds and then crashed deserves a prompt restart: its earlier failures are
    history, not a loop.
    """

    def __init__(
        self,
        *,
        initial: float = 1.0,
        cap: float = 30.0,
        stable_after: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("backoff needs 0 < initial <= cap")
        self._initial = initial
        self._cap = cap
        self._stable_after = stable_after
        self._clock = clock
        self._failures = 0
        self._started_at: float | None = None

    def started(self) -> None:
        """Record that the child has just been (re)started."""
        self._started_at = self._clock()

    def next_delay(self) -> float:
        """Record an exit and return how long to wait before the next start."""
        if self._started_at is not None and self._clock() - self._started_at >= self._stable_after:
            self._failures = 0
        self._started_at = None
        delay = min(self._cap, self._initial * 2.0 ** min(self._failures, 64))
        self._failures += 1
        return delay
